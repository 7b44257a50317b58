"""``Recognizer2D`` (TSN, TSM, TANet, TIN, TRN, ...): frames regrouped in time."""
from typing import List, Optional, Tuple

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import ADAPTERS
from ..utils.pipeline import (find_test_pipeline, pipeline_crop_frames,
                              pipeline_crops)
from .base import Recognizer3DAdapter


@ADAPTERS.register_module()
class Recognizer2DAdapter(Recognizer3DAdapter):
    """2D recognizers take ``[B, V*T, C, H, W]`` and see ``B*V*T`` frames.

    The stack of one sample is ``crops x clips x clip_len`` frames, crops
    outermost (``FormatShape('NCHW')``). ``T`` (frames per view) is, in
    order: the ``frames_per_view`` argument, ``backbone.num_segments``
    (TSM/TANet/TIN), ``cls_head.num_segments``, else the frames of one
    spatial crop as the test pipeline makes them (``model.cfg``'s: its
    sampler's ``clips x clip_len`` where that divides the stack, else the
    stack over its crops, ``TenCrop`` 10, ``ThreeCrop`` 3; the ``crops``
    argument overrides the pipeline's), else the whole stack. So TSN's test
    pipeline (25 segments x TenCrop, 250 frames) gives 10 views of 25
    frames, also for a chunk of its views. Layer outputs
    ``[B*V*T, C, h, w]`` are regrouped into ``[B, V, C, T, h, w]`` so that
    normalisation over (T, h, w) keeps relative temporal importance.
    """
    family = 'recognizer2d'
    input_format = 'NCHW'
    priority = 0

    def __init__(self, model: nn.Module,
                 frames_per_view: Optional[int] = None,
                 crops: Optional[int] = None, **kwargs):
        super().__init__(model)
        self.frames_per_view = frames_per_view
        self.crops = crops

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer2D
        return isinstance(model, Recognizer2D)

    def _pipeline(self):
        return find_test_pipeline(self.pipeline_config or
                                  getattr(self.model, 'cfg', None))

    def num_crops(self) -> int:
        """Spatial crops per frame of the model's test pipeline."""
        if self.crops:
            return int(self.crops)
        return pipeline_crops(self._pipeline())

    def _segments(self, frames: int) -> int:
        for seg in (self.frames_per_view,
                    getattr(self.model.backbone, 'num_segments', None),
                    getattr(self.model.cls_head, 'num_segments', None)):
            if seg and frames % int(seg) == 0:
                return int(seg)
        crops = self.num_crops()
        if crops <= 1:
            return frames
        per_crop = pipeline_crop_frames(self._pipeline())
        if per_crop and frames % per_crop == 0:
            return per_crop
        if frames % crops == 0:
            return frames // crops
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
