"""Gradient explainers (saliency, Integrated Gradients, SmoothGrad) and the
Captum adapter."""
import pytest
import torch

import tiny_models as tm
from mmxai.explainers import build_explainer


@pytest.fixture(scope='module')
def i3d():
    return tm.build(tm.i3d_cfg())


def test_integrated_gradients_completeness(i3d):
    """sum(map) = s(x) - s(baseline) within 2% of |s(x) - s(baseline)|
    at 64 midpoint steps (channels summed)."""
    x = tm.preprocess(i3d, tm.clip_batch(batch=2, views=2))['inputs']
    exp = build_explainer(dict(type='integrated_gradients', n_steps=64,
                               batch_size=32, progress=False),
                          i3d).attribute(x, 1)
    ad = build_explainer('saliency', i3d).adapter
    with torch.no_grad():
        diff = ad.scores(x)[:, 1] - ad.scores(torch.zeros_like(x))[:, 1]
    total = exp.raw_maps.flatten(1).sum(1)
    err = (total - diff).abs() / diff.abs()
    assert (err < 0.02).all(), err
    assert torch.allclose(exp.extras['convergence_delta'], total - diff,
                          atol=1e-5)


def test_ig_matches_captum_adapter(i3d):
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    ours = build_explainer(dict(type='integrated_gradients', n_steps=8,
                                progress=False), i3d).attribute(x, 1)
    cap = build_explainer(dict(type='CaptumExplainer',
                               algorithm='IntegratedGradients', n_steps=8,
                               method='riemann_middle'), i3d).attribute(x, 1)
    assert torch.allclose(ours.raw_maps, cap.raw_maps, atol=1e-6,
                          rtol=1e-4)


@pytest.mark.parametrize('method', ['saliency', 'smoothgrad'])
def test_gradient_maps_shapes_and_seed(i3d, method):
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    cfg = dict(type=method, progress=False)
    if method == 'smoothgrad':
        cfg.update(n_samples=4)
    a = build_explainer(cfg, i3d).attribute(x)
    b = build_explainer(cfg, i3d).attribute(x)
    assert a.raw_maps.shape == (1, 2, 8, 32, 32)
    assert (a.raw_maps >= 0).all() and a.raw_maps.max() > 0
    assert torch.equal(a.raw_maps, b.raw_maps)
    assert all(p.grad is None for p in i3d.parameters())


def test_saliency_equals_autograd(i3d):
    x = tm.preprocess(i3d, tm.clip_batch())['inputs']
    exp = build_explainer(dict(type='saliency', progress=False),
                          i3d).attribute(x, 3)
    xi = x.clone().requires_grad_(True)
    ad = build_explainer('saliency', i3d).adapter
    g, = torch.autograd.grad(ad.scores(xi)[0, 3], xi)
    assert torch.allclose(exp.raw_maps, g.abs().amax(2), atol=1e-7)


def test_captum_layer_algorithm_and_2d():
    model = tm.build(tm.tsm_cfg())
    x = tm.preprocess(model, tm.clip_batch(two_d=True))['inputs']
    exp = build_explainer(dict(type='captum', algorithm='LayerGradCam',
                               layer='backbone.layer4'), model).attribute(x)
    assert exp.raw_maps.shape == (1, 1, 8, 32, 32)
    ig = build_explainer(dict(type='integrated_gradients', n_steps=4,
                              progress=False), model).attribute(x)
    assert ig.raw_maps.shape == (1, 1, 8, 32, 32)


def test_ig_temporal_mean_baseline(i3d):
    """Against the clip's mean frame: completeness holds (within 2% at 64
    steps) and voxels that never change over time get zero."""
    x = tm.preprocess(i3d, tm.clip_batch(batch=1, views=2))['inputs']
    x = x.clone()
    x[..., :, :16, :] = x[..., :1, :16, :]  # top half static in time
    exp = build_explainer(dict(type='integrated_gradients', n_steps=64,
                               batch_size=32, baseline='temporal_mean',
                               progress=False), i3d).attribute(x, 2)
    assert exp.settings['baseline'] == 'temporal_mean'
    ad = build_explainer('saliency', i3d).adapter
    still = x.mean(dim=3, keepdim=True).expand_as(x)  # [B, V, C, T, H, W]
    with torch.no_grad():
        diff = ad.scores(x)[:, 2] - ad.scores(still)[:, 2]
    total = exp.raw_maps.flatten(1).sum(1)
    assert ((total - diff).abs() / diff.abs() < 0.02).all()
    moving = exp.raw_maps[..., 16:, :].abs().max()
    # zero up to the rounding of the mean frame
    assert exp.raw_maps[..., :16, :].abs().max() < 1e-6 * moving
