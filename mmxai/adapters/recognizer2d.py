"""``Recognizer2D`` (TSN, TSM, TANet, TIN, TRN, ...): frames regrouped in time."""
from typing import List, Optional, Tuple

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import ADAPTERS
from .base import Recognizer3DAdapter


@ADAPTERS.register_module()
class Recognizer2DAdapter(Recognizer3DAdapter):
    """2D recognizers take ``[B, V*T, C, H, W]`` and see ``B*V*T`` frames.

    ``T`` (frames per view) is, in order: the ``frames_per_view`` argument,
    ``backbone.num_segments`` (TSM/TANet/TIN), ``cls_head.num_segments``,
    else all frames of a sample form one view. Layer outputs
    ``[B*V*T, C, h, w]`` are regrouped into ``[B, V, C, T, h, w]`` so that
    normalisation over (T, h, w) keeps relative temporal importance.
    """
    family = 'recognizer2d'
    input_format = 'NCHW'
    priority = 0

    def __init__(self, model: nn.Module,
                 frames_per_view: Optional[int] = None, **kwargs):
        super().__init__(model)
        self.frames_per_view = frames_per_view

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer2D
        return isinstance(model, Recognizer2D)

    def _segments(self, frames: int) -> int:
        for seg in (self.frames_per_view,
                    getattr(self.model.backbone, 'num_segments', None),
                    getattr(self.model.cls_head, 'num_segments', None)):
            if seg and frames % int(seg) == 0:
                return int(seg)
        return frames

    def to_video(self, inputs: Tensor) -> Tensor:
        """``[B, V*T, C, H, W]`` -> ``[B, V, C, T, H, W]`` (views outermost,
        as ``FormatShape('NCHW')`` lays out crops x clips)."""
        if inputs.dim() != 5:
            raise UnsupportedModelError(
                f'{self.family} expects inputs [B, V*T, C, H, W] after the '
                f'data preprocessor, got {tuple(inputs.shape)}')
        b, n, c, h, w = inputs.shape
        t = self._segments(n)
        return inputs.view(b, n // t, t, c, h, w).permute(0, 1, 3, 2, 4, 5)

    def from_video(self, video: Tensor) -> Tensor:
        b, v, c, t, h, w = video.shape
        return video.permute(0, 1, 3, 2, 4, 5).reshape(b, v * t, c, h,
                                                       w).contiguous()

    def input_shape(self, inputs: Tensor) -> Tuple[int, int, int, int, int]:
        b, n, _, h, w = inputs.shape
        t = self._segments(n)
        return b, n // t, t, h, w

    def default_target_layers(self) -> List[str]:
        return ['backbone']
