"""``RecognizerOmni`` (OmniSource: one backbone for images and videos)."""
from torch import Tensor, nn

from ..registry import ADAPTERS
from .base import Recognizer3DAdapter


@ADAPTERS.register_module()
class OmniAdapter(Recognizer3DAdapter):
    """Videos ``[B, V, C, T, H, W]`` go through the backbone and the head's
    video classifier (``fc3d``); ``extract_feat`` returns features only."""
    family = 'omnisource'
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return type(model).__name__ == 'RecognizerOmni'

    def scores(self, inputs: Tensor, per_view: bool = False) -> Tensor:
        """Pre-softmax video scores ``[B, K]`` (``[B, V, K]`` per view),
        views averaged as the head's ``average_clip`` in 'score' mode."""
        batch = inputs.shape[0]
        feats = self.model.extract_feat(inputs, test_mode=True)
        cls_scores = self.model.cls_head(feats)
        num_segs = cls_scores.shape[0] // batch
        if per_view:
            return cls_scores.view(batch, num_segs, -1)
        return cls_scores.view(batch, num_segs, -1).mean(1)

    @property
    def num_classes(self) -> int:
        return int(self.model.cls_head.fc3d[-1].out_features)
