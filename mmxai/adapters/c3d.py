"""C3D: the backbone ends in fully connected layers (``fc6``/``fc7``)."""
from typing import List

from torch import nn

from ..registry import ADAPTERS
from .base import Recognizer3DAdapter


@ADAPTERS.register_module()
class C3DAdapter(Recognizer3DAdapter):
    """``Recognizer3D`` with a ``C3D`` backbone (fixed 16 x 112 x 112 input:
    ``fc6`` expects 512 x 1 x 4 x 4 features). The backbone's output is a
    vector ``[B*V, 4096]``, so Grad-CAM uses the last convolution
    ``backbone.conv5b`` (``[B*V, 512, 2, 7, 7]``)."""
    family = 'c3d'
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer3D
        return isinstance(model, Recognizer3D) and type(
            getattr(model, 'backbone', None)).__name__ == 'C3D'

    def default_target_layers(self) -> List[str]:
        return ['backbone.conv5b']
