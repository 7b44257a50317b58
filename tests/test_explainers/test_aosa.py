"""AOSA: flow-following occluders, exact and first-order modes."""
import numpy as np
import pytest
import torch
from torch import nn

import tiny_models as tm
from mmaction.registry import MODELS
from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.explainers.aosa import AOSA, Trajectories, farneback_flow
from mmxai.testing.coverage import ModelSnapshot
from planted_model import argmax_thw, in_region, planted_inputs, planted_model


@MODELS.register_module(name='MMXAILinearBackbone', force=True)
class LinearBackbone(nn.Module):
    """A random 1x1x1 conv, no activation: with the I3D head's average pool
    and linear classifier, every logit is linear in the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)
        with torch.no_grad():
            g = torch.Generator().manual_seed(1)
            w = torch.randn(1, 1, 4, 16, 16, generator=g)
            self.register_buffer('weight_map', w)

    def init_weights(self):
        pass

    def forward(self, x):
        return self.conv(x) * self.weight_map


def linear_model() -> nn.Module:
    model = MODELS.build(dict(
        type='Recognizer3D', backbone=dict(type='MMXAILinearBackbone'),
        cls_head=dict(type='I3DHead', num_classes=3, in_channels=2,
                      spatial_type='avg', dropout_ratio=0.0),
        data_preprocessor=tm.PREPROCESSOR_3D))
    return model.eval()


def moving_clip(frames=4, size=16, step=1, seed=0):
    """``[1, 1, 3, T, S, S]`` normalised clip: a smooth random texture
    translated ``step`` px to the right per frame."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, 1, size // 4, size // 4 + frames, generator=g)
    base = nn.functional.interpolate(base, scale_factor=4, mode='bilinear')
    clip = torch.stack([base[:, 0, :, step * (frames - t):][:, :, :size]
                        for t in range(frames)], 1)  # [3, T, S, S]
    return (clip * 2 - 1)[None, None]


@pytest.fixture(scope='module')
def planted():
    return planted_model(), planted_inputs()


@pytest.mark.parametrize('mode', ['exact', 'approx'])
def test_aosa_recovers_planted_region(planted, mode):
    model, x = planted
    snap = ModelSnapshot(model)
    exp = AOSA(model, window=(2, 8, 8), stride=(2, 4, 4), mode=mode,
               batch_size=64, progress=False).attribute(x, 0)
    assert not snap.changes()
    assert exp.raw_maps.shape == (1, 1) + x.shape[3:]
    assert in_region(argmax_thw(exp.raw_maps[0, 0]))
    assert exp.method == 'aosa'
    assert int(exp.extras['num_occluders']) == 4 * 7 * 7


@pytest.mark.parametrize('score', ['prob', 'logit'])
def test_static_clip_equals_fixed_window_occlusion(score):
    """Identical frames: no motion, every track is a fixed window, so AOSA
    is 3D occlusion with the same window and stride (an independent
    implementation, itself checked against Captum). Two views (planted
    model, probabilities) and the linear model (logits)."""
    if score == 'prob':
        model, x = planted_model(), planted_inputs().repeat(1, 2, 1, 1, 1, 1)
        x[:, 1] += 0.2
        kw = dict(window=(4, 11, 11), stride=(4, 11, 11))
    else:
        model, x = linear_model(), moving_clip()
        kw = dict(window=(2, 8, 8), stride=(2, 6, 6))
    x = x[:, :, :, :1].expand_as(x).contiguous()  # one frame repeated
    t, h, w = x.shape[3:]
    frames = AOSA(model).frames(x)
    flow = farneback_flow(frames[0, 0])
    assert np.abs(flow).max() < 0.5  # Farneback: sub-pixel, rounds to 0
    tr = Trajectories(flow, t, h, w, kw['window'], kw['stride'])
    assert (tr.top == tr.top[:, :1]).all() and \
        (tr.left == tr.left[:, :1]).all() and tr.active.any(0).all()
    kw.update(baseline=0.3, score=score, batch_size=16, progress=False)
    ours = AOSA(model, **kw).attribute(x, 0)
    ref = build_explainer(dict(type='occlusion', **kw), model).attribute(x, 0)
    assert ours.raw_maps.abs().max() > 0
    assert torch.allclose(ours.raw_maps, ref.raw_maps, atol=1e-6, rtol=1e-4)


def test_tracks_follow_translation():
    """A texture moving 1 px/frame to the right: interior tracks move by
    about 1 px/frame in x and not in y (Farneback's flow, rounded)."""
    x = moving_clip(frames=4, size=32, step=1)
    frames = ((x[0, 0] + 1) / 2 * 255).round().clamp(0, 255).byte()
    frames = frames.permute(1, 2, 3, 0).numpy()
    flow = farneback_flow(frames)
    tr = Trajectories(flow, 4, 32, 32, (4, 6, 6), (4, 6, 6))
    inner = (tr.top[:, 0] >= 6) & (tr.top[:, 0] <= 18) & \
        (tr.left[:, 0] <= 18)
    assert inner.sum() >= 4
    dx = np.diff(tr.left[inner], axis=1)
    dy = np.diff(tr.top[inner], axis=1)
    assert (dx == 1).mean() > 0.8 and (dy == 0).mean() > 0.8
    assert tr.active[inner].all()


@pytest.mark.parametrize('kw', [dict(), dict(stack=2), dict(adjust=True),
                                dict(aggregate='sum')])
def test_first_order_exact_on_linear_model(kw):
    """For a model linear in the input, s(x + (v - x) m) = s(x) + grad .
    (v - x) m exactly (and the expansion at any other point too): the
    approximation equals the exact mode, on a moving clip (tracks move,
    some stacked), per view."""
    model = linear_model()
    x = torch.cat([moving_clip(seed=0), moving_clip(seed=1)], 1)
    common = dict(window=(2, 6, 6), stride=(2, 5, 5), score='logit',
                  batch_size=32, progress=False, **kw)
    snap = ModelSnapshot(model)
    exact = AOSA(model, mode='exact', **common).attribute(x, 1)
    approx = AOSA(model, mode='approx', **common).attribute(x, 1)
    assert not snap.changes()
    scale = float(exact.raw_maps.abs().max())
    assert scale > 0 and exact.raw_maps[0, 0].std() > 0.05 * scale
    assert torch.allclose(approx.raw_maps, exact.raw_maps,
                          atol=1e-4 * scale, rtol=1e-3)


def test_adjust_moves_approximation_towards_exact(planted):
    """On the planted model with probabilities (nonlinear), the correction
    re-estimates some occluders and moves the approximation towards the
    exact drops."""
    model, x = planted
    kw = dict(window=(2, 8, 8), stride=(2, 6, 6), batch_size=64,
              progress=False)
    exact = AOSA(model, mode='exact', **kw).attribute(x, 0).raw_maps
    plain = AOSA(model, mode='approx', **kw).attribute(x, 0).raw_maps
    adj = AOSA(model, mode='approx', adjust=True, **kw).attribute(x, 0)
    adj = adj.raw_maps
    assert not torch.equal(adj, plain)
    assert (adj - exact).abs().mean() < (plain - exact).abs().mean()


def test_options_checked():
    model = linear_model()
    for bad in (dict(mode='fast'), dict(aggregate='max'), dict(stack=-1),
                dict(batch_size=0), dict(score='softmax')):
        with pytest.raises(MMXAIError):
            AOSA(model, **bad)
    with pytest.raises(MMXAIError):
        AOSA(model, window=(2, 2, 2), stride=(1, 3, 3),
             progress=False).attribute(moving_clip(), 0)
