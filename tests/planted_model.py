"""A real ``Recognizer3D`` + ``I3DHead`` whose class-0 score is driven only
by a known spatio-temporal region (planted-answer tests).

The backbone, registered in MMAction2's ``MODELS`` under the test-only name
``MMXAIPlantedBackbone``, is a hand-set 1x1x1 ``nn.Conv3d`` reading colour
channel 0, a ReLU, and a fixed 0/1 weight volume that is 1 only inside
``REGION``. The head averages it (GAP) and its ``fc_cls`` weighs it
``+gain`` for class 0 and ``-gain`` for class 1, so only voxels in
``REGION`` move the scores.
"""
import torch
from torch import nn

import tiny_models as tm  # noqa: F401  (registers mmaction modules)
from mmaction.registry import MODELS

FRAMES, SIZE = 8, 32
#: (t0, t1, h0, h1, w0, w1) of the evidence region.
REGION = (2, 5, 8, 16, 18, 26)


@MODELS.register_module(name='MMXAIPlantedBackbone', force=True)
class PlantedBackbone(nn.Module):
    """``[N, 3, T, H, W] -> [N, 1, T, H, W]``: ``relu(x_0) * W_region``."""

    def __init__(self, region=REGION, frames=FRAMES, size=SIZE):
        super().__init__()
        self.conv = nn.Conv3d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
        w = torch.zeros(1, 1, frames, size, size)
        t0, t1, h0, h1, w0, w1 = region
        w[..., t0:t1, h0:h1, w0:w1] = 1.0
        self.register_buffer('region_weight', w)

    def init_weights(self):
        pass

    def forward(self, x):
        return torch.relu(self.conv(x)) * self.region_weight


def planted_model(gain: float = 2000.0) -> nn.Module:
    """Class 0 vs 1 logits ``+-gain * feature``, class 1's bias set so both
    are equally likely on :func:`planted_inputs` (probability 0.5): the
    decision is steep in the region's evidence and nowhere saturated."""
    model = MODELS.build(dict(
        type='Recognizer3D', backbone=dict(type='MMXAIPlantedBackbone'),
        cls_head=dict(type='I3DHead', num_classes=2, in_channels=1,
                      spatial_type='avg', dropout_ratio=0.0,
                      average_clips='prob'),
        data_preprocessor=tm.PREPROCESSOR_3D))
    with torch.no_grad():
        feat = torch.relu(planted_inputs()[0, :, 0]).mul(
            model.backbone.region_weight[0]).mean()
        model.cls_head.fc_cls.weight.copy_(torch.tensor([[gain], [-gain]]))
        model.cls_head.fc_cls.bias.copy_(torch.tensor([0.0, 2 * gain * feat]))
    return model.eval()


def planted_inputs(seed: int = 0) -> torch.Tensor:
    """``[1, 1, 3, T, H, W]`` normalised clip, positive textured channel 0
    (so blur, fade and removal all change the evidence)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, 3, FRAMES, SIZE, SIZE, generator=g) * 0.3
    x[:, :, 0] = 0.5 + torch.rand(1, 1, FRAMES, SIZE, SIZE, generator=g)
    return x


def in_region(index) -> bool:
    """Is the ``(t, h, w)`` index inside ``REGION``?"""
    t, h, w = index
    t0, t1, h0, h1, w0, w1 = REGION
    return t0 <= t < t1 and h0 <= h < h1 and w0 <= w < w1


def argmax_thw(m: torch.Tensor):
    """``(t, h, w)`` of the maximum of a ``[T, H, W]`` map."""
    idx = int(m.flatten().argmax())
    t, rem = divmod(idx, m.shape[1] * m.shape[2])
    h, w = divmod(rem, m.shape[2])
    return t, h, w
