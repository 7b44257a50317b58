"""Two-pathway SlowFast: one map per pathway, each on its own time base."""
from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import ADAPTERS
from .base import Recognizer3DAdapter, upsample_maps

SLOW, FAST = 'backbone.slow_path', 'backbone.fast_path'


@ADAPTERS.register_module()
class SlowFastAdapter(Recognizer3DAdapter):
    """``Recognizer3D`` with a ``ResNet3dSlowFast`` backbone.

    The slow pathway sees ``T // resample_rate`` frames, the fast one
    ``T // (resample_rate // speed_ratio)`` (nearest-neighbour temporal
    resampling, as the backbone does). Default target layers are the last
    residual stage of each pathway; a layer inside a pathway is upsampled to
    that pathway's own frames (``Explanation.layer_maps``), and explainers
    fuse the pathways by bringing each map to the input's ``T`` and summing.

    ``SlowFastHead`` pools each pathway and concatenates ``(fast, slow)``
    before its linear layer: :meth:`head_feature_parts` returns the head's
    inputs in that order so the classifier weights split by pathway.
    """
    family = 'slowfast'
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer3D
        backbone = getattr(model, 'backbone', None)
        return isinstance(model, Recognizer3D) and \
            type(backbone).__name__ == 'ResNet3dSlowFast'

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def default_target_layers(self) -> List[str]:
        """The last residual stage of each pathway (slow first)."""
        slow = self.backbone.slow_path.res_layers[-1]
        fast = self.backbone.fast_path.res_layers[-1]
        return [f'{SLOW}.{slow}', f'{FAST}.{fast}']

    def pathway_frames(self, frames: int) -> Dict[str, int]:
        """Input frames each pathway sees, for a clip of ``frames``."""
        rate = int(self.backbone.resample_rate)
        fast_rate = max(rate // int(self.backbone.speed_ratio), 1)
        return {'slow': max(frames // rate, 1),
                'fast': max(frames // fast_rate, 1)}

    @staticmethod
    def pathway_of(name: str) -> Optional[str]:
        """``'slow'``/``'fast'`` for a layer inside a pathway, else None."""
        dotted = name.replace('/', '.')
        if dotted.startswith(SLOW) or dotted == 'slow':
            return 'slow'
        if dotted.startswith(FAST) or dotted == 'fast':
            return 'fast'
        return None

    def time_bases(self, inputs: Tensor) -> Dict[str, int]:
        """Frames of the input each default layer's map is shown on."""
        _, _, t, _, _ = self.input_shape(inputs)
        frames = self.pathway_frames(t)
        return {n: frames[self.pathway_of(n)]
                for n in self.default_target_layers()}

    def upsample(self, grid_map: Tensor, name: str, inputs: Tensor) -> Tensor:
        """``[B, V, t, h, w]`` -> ``[B, V, T_p, H, W]`` with ``T_p`` the
        frames of the layer's pathway (``T`` outside the pathways)."""
        _, _, t, h, w = self.input_shape(inputs)
        path = self.pathway_of(name)
        if path is not None:
            t = self.pathway_frames(t)[path]
        return upsample_maps(grid_map, (t, h, w))

    def head_feature_parts(self, feats, inputs: Tensor
                           ) -> List[Tuple[str, Tensor]]:
        """The head's input ``(slow, fast)`` -> ``[(name, grid)]`` in the
        order ``SlowFastHead`` concatenates them (fast, then slow); grids
        are ``[B, V, C_p, t_p, h, w]``."""
        if not isinstance(feats, (tuple, list)) or len(feats) != 2:
            raise UnsupportedModelError(
                'SlowFast head input must be (slow, fast) features')
        slow, fast = feats
        return [(FAST, self.activation_grid(FAST, fast, inputs)),
                (SLOW, self.activation_grid(SLOW, slow, inputs))]
