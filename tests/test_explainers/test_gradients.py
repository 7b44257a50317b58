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


# --------------------------------------------------------------- Captum
#: The Captum algorithms docs/methods.md lists as working, with cheap
#: settings. ``None`` values are filled in per input (baselines, masks).
CAPTUM_WORKING = {
    'IntegratedGradients': dict(n_steps=4),
    'Saliency': {},
    'InputXGradient': {},
    'GradientShap': dict(baselines=None, n_samples=2),
    'DeepLift': {},
    'DeepLiftShap': dict(baselines=None),
    'GuidedBackprop': {},
    'Deconvolution': {},
    'GuidedGradCam': dict(layer='backbone.layer4'),
    'NoiseTunnel': dict(init_kwargs=dict(attribution_method='Saliency'),
                        nt_samples=2),
    'FeatureAblation': dict(feature_mask=None),
    'ShapleyValueSampling': dict(feature_mask=None, n_samples=1),
    'Occlusion': dict(sliding_window_shapes=(1, 3, 4, 16, 16),
                      strides=(1, 3, 4, 16, 16)),
    'LayerGradCam': dict(layer='backbone.layer4'),
    'LayerDeepLift': dict(layer='backbone.layer4'),
    'LayerIntegratedGradients': dict(layer='backbone.layer4', n_steps=4),
    'LayerGradientXActivation': dict(layer='backbone.layer4'),
    'LayerActivation': dict(layer='backbone.layer4'),
    'NeuronGradient': dict(layer='backbone.layer4',
                           neuron_selector=(0, 0, 0, 0)),
}


def _captum_cfg(algorithm, x):
    cfg = dict(type='captum', algorithm=algorithm)
    for k, v in CAPTUM_WORKING[algorithm].items():
        if v is None and k == 'baselines':
            v = torch.zeros(2, *x.shape[1:])
        elif v is None and k == 'feature_mask':  # 8 blocks: 2 t x 2 h x 2 w
            v = torch.zeros_like(x, dtype=torch.long)
            v[..., 16:, :] += 1
            v[..., 16:] += 2
            v[:, :, :, 4:] += 4
        cfg[k] = v
    return cfg


def _model_state(model):
    """Everything an explainer must leave as it found it."""
    from mmxai.utils.model_state import _HOOK_DICTS
    return [(name, type(m), m.training, getattr(m, 'inplace', None),
             sorted(vars(m)),
             {d: len(getattr(m, d, {}) or {}) for d in _HOOK_DICTS},
             [(p.requires_grad, p.grad is None)
              for p in m.parameters(recurse=False)])
            for name, m in model.named_modules()]


@pytest.mark.parametrize('algorithm', sorted(CAPTUM_WORKING))
def test_captum_algorithms_run_and_leave_the_model(i3d, algorithm):
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    relus = [m for m in i3d.modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and all(m.inplace for m in relus)  # what the fix is for
    before = _model_state(i3d)
    exp = build_explainer(_captum_cfg(algorithm, x), i3d).attribute(x, 1)
    assert exp.raw_maps.shape == (1, 2, 8, 32, 32)
    assert torch.isfinite(exp.raw_maps).all()
    assert exp.raw_maps.abs().max() > 0, algorithm
    assert _model_state(i3d) == before


@pytest.mark.parametrize('algorithm', ['DeepLift', 'GuidedBackprop',
                                       'GuidedGradCam', 'LayerDeepLift'])
def test_captum_hooking_algorithms_restore_the_model_on_failure(
        i3d, algorithm):
    """A failure in the middle of the forward, while Captum's hooks are on
    and the ReLUs are out of place: everything is restored."""
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    ex = build_explainer(_captum_cfg(algorithm, x), i3d)
    seen = []

    def boom(module, args, out):  # only inside Captum's call
        relus = [m for m in i3d.modules() if isinstance(m, torch.nn.ReLU)]
        seen.append([m.inplace for m in relus])
        if not any(seen[-1]):
            raise RuntimeError('boom')

    handle = i3d.backbone.layer3.register_forward_hook(boom)
    try:
        before = _model_state(i3d)
        with pytest.raises(RuntimeError, match='boom'):
            ex.attribute(x, 1)
        assert _model_state(i3d) == before
    finally:
        handle.remove()
    assert seen and not any(seen[-1])  # the failure hit inside the swap


def test_captum_deeplift_completeness(i3d):
    """DeepLift's attributions sum to s(x) - s(0) (the rescale rule's
    summation-to-delta): every ReLU of the model was seen as a module.
    Captum's max-pool rule is not exactly conservative (its own
    convergence delta here: ~0.15 %); ReLUs taken as linear (the plain
    gradient x input) miss by ~15 %."""
    x = tm.preprocess(i3d, tm.clip_batch(batch=2, views=2))['inputs']
    exp = build_explainer(dict(type='captum', algorithm='DeepLift'),
                          i3d).attribute(x, 3)
    ad = build_explainer('saliency', i3d).adapter
    with torch.no_grad():
        diff = ad.scores(x)[:, 3] - ad.scores(torch.zeros_like(x))[:, 3]
    total = exp.raw_maps.flatten(1).sum(1)
    assert torch.allclose(total, diff, rtol=1e-2, atol=1e-4), (total, diff)


def test_captum_guided_backprop_equals_reference(i3d):
    """Guided backprop = the gradient with every ReLU's backward also
    clamped at zero, computed here with an autograd function in place of
    the model's ReLU modules."""
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    exp = build_explainer(dict(type='captum', algorithm='GuidedBackprop',
                               reduction='sum'), i3d).attribute(x, 2)

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            t, = ctx.saved_tensors
            return g.clamp(min=0) * (t > 0)

    relus = [m for m in i3d.modules() if isinstance(m, torch.nn.ReLU)]
    originals = [m.forward for m in relus]
    ad = build_explainer('saliency', i3d).adapter
    try:
        for m in relus:
            m.forward = GuidedReLU.apply
        xi = x.clone().requires_grad_(True)
        g, = torch.autograd.grad(ad.scores(xi)[0, 2], xi)
    finally:
        for m, f in zip(relus, originals):
            m.forward = f
    assert torch.allclose(exp.raw_maps, g.sum(2), atol=1e-6, rtol=1e-4)


def test_captum_guided_gradcam_is_gbp_times_cam(i3d):
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    ggc = build_explainer(dict(type='captum', algorithm='GuidedGradCam',
                               layer='backbone.layer4'), i3d).attribute(x, 2)
    gbp = build_explainer(dict(type='captum', algorithm='GuidedBackprop'),
                          i3d).attribute(x, 2)
    cam = build_explainer(dict(type='captum', algorithm='LayerGradCam',
                               layer='backbone.layer4',
                               relu_attributions=True), i3d).attribute(x, 2)
    want = gbp.extras['attributions'] * cam.raw_maps.unsqueeze(2)
    assert torch.allclose(ggc.extras['attributions'], want, atol=1e-7)


@pytest.mark.parametrize('algorithm,kw,why', [
    ('LRP', {}, 'no rule defined'),
    ('NoiseTunnel', {}, 'attribution_method'),
])
def test_captum_unsupported_fail_clearly(i3d, algorithm, kw, why):
    x = tm.preprocess(i3d, tm.clip_batch())['inputs']
    before = _model_state(i3d)
    with pytest.raises(Exception, match=why):
        build_explainer(dict(type='captum', algorithm=algorithm, **kw),
                        i3d).attribute(x, 1)
    assert _model_state(i3d) == before
