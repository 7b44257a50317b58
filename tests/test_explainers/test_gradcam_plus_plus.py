"""Grad-CAM++ against a case computed by hand at an inner layer.

The recognizer's backbone is ``inner`` (a 1x1x1 convolution, the target
layer) followed by an element-wise square, then the I3D head (GAP + linear).
With ``A`` the inner layer's output, ``N = t h w`` and ``V`` views,
``S_c = b_c + 1/V sum_v sum_k W[c, k] mean_thw A_k^2``, so the gradient is
known in closed form: ``g = 2 W[c, k] A / (N V)``. It varies over (t, h, w),
so the paper's denominator ``2 g^2 + g^3 sum A`` and the variant
``2 g^2 + sum (A g^3)`` differ here.
"""
import numpy as np
import pytest
import torch
from torch import nn

from mmaction.registry import MODELS

from mmxai.errors import MMXAIError
from mmxai.explainers import GradCAMPlusPlus, build_explainer
from tiny_models import PREPROCESSOR_3D


@MODELS.register_module(force=True)
class SquareBackbone(nn.Module):
    """``inner(x) ** 2`` (test only)."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.inner = nn.Conv3d(3, channels, 1)

    def forward(self, x):
        return self.inner(x) ** 2

    def init_weights(self):
        pass


def square_model():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='Recognizer3D', backbone=dict(type='SquareBackbone'),
        cls_head=dict(type='I3DHead', num_classes=4, in_channels=3,
                      spatial_type='avg', dropout_ratio=0.0,
                      average_clips='prob'),
        data_preprocessor=PREPROCESSOR_3D)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.backbone.inner.weight.normal_(generator=g)
        model.backbone.inner.bias.normal_(generator=g)
        model.cls_head.fc_cls.weight.normal_(generator=g)
    return model


def hand_gradcampp(model, x, cls, denominator, dims=(1, 2, 3)):
    """numpy: ``x`` [V, 3, T, H, W] -> map [V, T, H, W]."""
    w_in = model.backbone.inner.weight.detach().double().numpy()[:, :, 0, 0, 0]
    b_in = model.backbone.inner.bias.detach().double().numpy()
    w_fc = model.cls_head.fc_cls.weight.detach().double().numpy()[cls]
    x = x.double().numpy()
    views = x.shape[0]
    maps = []
    for v in range(views):
        a = np.einsum('kc,cthw->kthw', w_in, x[v]) + b_in[:, None, None, None]
        n = a[0].size
        g = 2 * w_fc[:, None, None, None] * a / (n * views)
        s_a = a.sum(axis=dims, keepdims=True)
        if denominator == 'paper':
            denom = 2 * g ** 2 + g ** 3 * s_a
        else:
            denom = 2 * g ** 2 + (a * g ** 3).sum(axis=dims, keepdims=True)
        alpha = np.where(denom != 0, g ** 2 / np.where(denom != 0, denom, 1),
                         0.0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=dims, keepdims=True)
        maps.append(np.maximum((weights * a).sum(0), 0))
    return np.stack(maps)


@pytest.fixture(scope='module')
def case():
    model = square_model()
    x = torch.randn(1, 2, 3, 4, 6, 6, generator=torch.Generator(
    ).manual_seed(2))
    return model, x


@pytest.mark.parametrize('weighting', ['global', 'temporal'])
@pytest.mark.parametrize('denominator', ['paper', 'sum_ag3'])
def test_gradcampp_equals_hand_computed_at_inner_layer(case, weighting,
                                                       denominator):
    model, x = case
    dims = (1, 2, 3) if weighting == 'global' else (2, 3)
    kw = {} if denominator == 'paper' else dict(denominator=denominator)
    exp = GradCAMPlusPlus(model, target_layers=['backbone.inner'],
                          weighting=weighting, **kw).attribute(x, target=2)
    ref = hand_gradcampp(model, x[0], 2, denominator, dims)
    assert exp.settings['denominator'] == denominator
    assert ref.max() > 0
    np.testing.assert_allclose(exp.raw_maps[0].double().numpy(), ref,
                               rtol=1e-3, atol=1e-4 * ref.max())


def test_denominators_differ_at_inner_layer(case):
    model, x = case
    paper = hand_gradcampp(model, x[0], 2, 'paper')
    other = hand_gradcampp(model, x[0], 2, 'sum_ag3')
    assert np.abs(paper - other).max() > 0.05 * paper.max()


def test_denominators_agree_at_gap_linear_head_input():
    """``g`` is constant over (t, h, w) at a GAP + linear head's input."""
    from tiny_models import build, clip_batch, i3d_cfg, preprocess
    model = build(i3d_cfg())
    x = preprocess(model, clip_batch(views=2))['inputs']
    a = build_explainer('gradcam++', model).attribute(x, 1)
    b = build_explainer('gradcam++', model,
                        denominator='sum_ag3').attribute(x, 1)
    torch.testing.assert_close(a.raw_maps, b.raw_maps, rtol=1e-4, atol=1e-7)


def test_unknown_denominator():
    with pytest.raises(MMXAIError, match='denominator'):
        GradCAMPlusPlus(square_model(), denominator='x')
