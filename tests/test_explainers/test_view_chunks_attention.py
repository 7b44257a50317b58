"""Bounded memory for the attention methods (rollout, Chefer relevance,
LeGrad, STAA), Class Feature Pyramids and the Captum wrapper: views in
passes of ``max_views_per_pass`` (or from a tiny ``max_memory``) equal one
pass, the plan is reported, out-of-memory errors halve the pass, and the
gradient methods' graph starts at the first attention."""
import pytest
import torch

import tiny_models as tm
from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.testing.coverage import ModelSnapshot
from mmxai.testing.memory_probes import (OOMAbove, assert_same_explanations,
                                        backbone_rows)
from mmxai.testing.toolbox_configs import build_small, representative_configs

REPS = representative_configs()
#: a budget that fits every view of these tiny inputs in one pass (the
#: default budget may already split them)
ONE_PASS = dict(max_views_per_pass=None, max_memory='64G')
_MODELS = {}
ATTENTION = ('attention_rollout', 'attention_relevance', 'legrad', 'staa')


def small(family):
    """A tiny toolbox transformer (random weights, 32 px) and an input of 2
    samples x 3 views."""
    if family not in _MODELS:
        sm = build_small(REPS[family], size=32)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, *sm.inputs.shape[2:], generator=g)
        _MODELS[family] = (sm.model, x)
    return _MODELS[family]


def run_chunked(method, model, x, target, **opts):
    """One pass and one view per pass: both explanations and the chunked
    run's explainer. The largest forward of the chunked run has ``1/V`` of
    the rows of one pass's or fewer (the views of one pass, plan reported;
    the budget may lower a batch too)."""
    one = build_explainer(method, model, **ONE_PASS, **opts)
    views = one.adapter.input_shape(x)[1]
    assert views > 1
    chunked = build_explainer(method, model, max_views_per_pass=1, **opts)
    seen = []
    for exp in (one, chunked):
        rows, handle = backbone_rows(model)
        try:
            seen.append((exp.attribute(x, target), max(rows)))
        finally:
            handle.remove()
    assert one.last_memory_plan['views_per_pass'] == views
    assert chunked.last_memory_plan['views_per_pass'] == 1
    (a, rows_one), (b, rows_chunked) = seen
    assert rows_chunked * views <= rows_one
    return a, b, chunked


# ------------------------------------------------------------- attention
@pytest.mark.parametrize('family,method', [
    ('timesformer', m) for m in ATTENTION] + [
    ('videomae', 'attention_relevance'),
    pytest.param('videomae', 'legrad', marks=pytest.mark.sweep)])
def test_attention_views_in_passes_equal_one_pass(family, method):
    model, x = small(family)
    snap = ModelSnapshot(model)
    target = 'pred' if method == 'legrad' else [1, 2]
    a, b, exp = run_chunked(method, model, x, target)
    extras = ['token_map'] + (['layer_scores'] if method == 'legrad' else
                              ['spatial', 'temporal'] if method == 'staa'
                              else [])
    assert_same_explanations(a, b, extras)
    assert 'scores' not in vars(exp.adapter)
    assert snap.changes() == []


@pytest.mark.sweep
@pytest.mark.parametrize('family', ['swin', 'mvit', 'uniformer',
                                    'uniformerv2'])
@pytest.mark.parametrize('method', ATTENTION[:3])
def test_local_attention_views_in_passes_equal_one_pass(family, method):
    model, x = small(family)
    a, b, _ = run_chunked(method, model, x, [1, 2])
    assert_same_explanations(a, b, ['token_map'])


@pytest.mark.parametrize('method', ['attention_relevance', 'legrad'])
def test_attention_graph_starts_at_the_first_attention(method):
    """Nothing below the first attention is on the graph (the patch
    embedding's output needs no grad), no parameter gets a gradient, and the
    maps are those of a graph from the input: Chefer relevance on VideoMAE
    against ``R <- R + mean_h ReLU(dS/dA * A) R`` by hand, with autograd of
    the score w.r.t. attention recorded with the input requiring grad."""
    model, x = small('videomae')
    snap = ModelSnapshot(model)
    seen = []
    handle = model.backbone.patch_embed.register_forward_hook(
        lambda m, args, out: seen.append((torch.is_grad_enabled(), (
            out[0] if isinstance(out, tuple) else out).requires_grad)))
    try:
        exp = build_explainer(method, model, **ONE_PASS)
        out = exp.attribute(x[:1, :1], 1)
    finally:
        handle.remove()
    assert (True, False) in seen  # the graph forward: no grad below
    assert snap.changes() == []
    if method == 'legrad':
        return
    # independent: the graph from the input, the relevance rule by hand
    from mmxai.explainers.attention import record_attention
    xx = x[:1, :1].clone().requires_grad_(True)
    with record_attention(model.backbone) as calls, torch.enable_grad():
        s = exp.adapter.scores(xx)[0, 1]
        grads = torch.autograd.grad(s, [c.probs for c in calls])
    model.zero_grad(set_to_none=True)
    r = None
    for c, g in zip(calls, grads):  # R <- R + mean_h ReLU(g A) R
        a = torch.relu(g * c.probs.detach()).mean(1)[0]
        r = torch.eye(a.shape[0]) if r is None else r
        r = r + a @ r
    n = r.shape[0]
    ref = (r - torch.eye(n)).mean(0)  # column mean of R - I (mean pooled)
    torch.testing.assert_close(out.extras['token_map'].flatten(), ref,
                               rtol=1e-4, atol=1e-6)


def test_attention_tiny_budget_and_out_of_memory():
    """``max_memory='1K'``: one view per pass, the same maps; a CUDA
    out-of-memory error above one view halves the pass (model as found)."""
    model, x = small('timesformer')
    ref = build_explainer('attention_relevance', model,
                          **ONE_PASS).attribute(x, [1, 2])
    small_budget = build_explainer('attention_relevance', model,
                                   max_memory='1K')
    got = small_budget.attribute(x, [1, 2])
    plan = small_budget.last_memory_plan
    assert plan['views_per_pass'] == 1 and plan['budget'] == 1024
    assert plan['view_graph_bytes'] > plan['view_forward_bytes'] > 0
    assert_same_explanations(ref, got, ['token_map'])
    snap = ModelSnapshot(model)
    oom = OOMAbove(model, 2)
    try:
        exp = build_explainer('attention_rollout', model,
                              **ONE_PASS)
        got = exp.attribute(x, [1, 2])
    finally:
        oom.handle.remove()
    assert oom.raised > 0 and exp.last_memory_plan['views_per_pass'] == 1
    assert snap.changes() == []
    ref = build_explainer('attention_rollout', model,
                          **ONE_PASS).attribute(x, [1, 2])
    assert_same_explanations(ref, got, ['token_map'])


# ------------------------------------------------------------------- CFP
def assert_same_graphs(a, b):
    """The same nodes (ids, layers, kernels, levels, children, refs) with
    scores equal to float rounding (a pass of fewer views may round a
    convolution's last bit differently; scores are kept to 6 digits)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            if k == 'score':
                assert abs(a[k] - b[k]) <= 2e-6, (a[k], b[k])
            else:
                assert_same_graphs(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_graphs(x, y)
    else:
        assert a == b


@pytest.mark.parametrize('two_d,target,depth', [
    (False, 'pred', 2),
    pytest.param(True, [1, 3], 1, marks=pytest.mark.sweep)])
def test_cfp_views_in_passes_equal_one_pass(two_d, target, depth):
    """Two rounds of passes (channel sums, then tubes): the same graphs
    (node for node, scores to 6 digits), tubes and maps as one pass."""
    model = tm.build(tm.tsm_cfg(num_segments=2) if two_d else tm.i3d_cfg(),
                     seed=1)
    data = tm.preprocess(model, tm.clip_batch(
        batch=2, views=3, two_d=two_d, seed=3, labels=[1, 3],
        frames=2 if two_d else 8))
    x = data['inputs']
    snap = ModelSnapshot(model)
    a, b, _ = run_chunked('cfp', model, x, target, depth=depth)
    assert len(a.extras['cfp_graph']) == 2
    assert_same_graphs(a.extras['cfp_graph'], b.extras['cfp_graph'])
    assert sorted(a.extras['cfp_tubes']) == sorted(b.extras['cfp_tubes'])
    for k, tube in a.extras['cfp_tubes'].items():
        assert tube.shape[:2] == (2, 3)
        torch.testing.assert_close(b.extras['cfp_tubes'][k], tube,
                                   rtol=1e-5, atol=1e-5)
    assert torch.equal(a.targets, b.targets)
    assert a.raw_maps.abs().max() > 0
    torch.testing.assert_close(b.raw_maps, a.raw_maps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.scores, a.scores, rtol=1e-5, atol=1e-5)
    assert snap.changes() == []


def test_cfp_out_of_memory_halves_the_pass():
    model = tm.build(tm.i3d_cfg(), seed=1)
    x = tm.preprocess(model, tm.clip_batch(views=2, frames=4,
                                           seed=3))['inputs']
    ref = build_explainer('cfp', model, depth=1, **ONE_PASS).attribute(x, 1)
    oom = OOMAbove(model, 1)
    try:
        exp = build_explainer('cfp', model, depth=1, **ONE_PASS)
        got = exp.attribute(x, 1)
    finally:
        oom.handle.remove()
    assert oom.raised > 0 and exp.last_memory_plan['views_per_pass'] == 1
    assert_same_graphs(ref.extras['cfp_graph'], got.extras['cfp_graph'])
    torch.testing.assert_close(got.raw_maps, ref.raw_maps, rtol=1e-5,
                               atol=1e-5)


# ---------------------------------------------------------------- Captum
def _captum(algorithm, **kw):
    """Options of the Captum wrapper (``build_explainer('captum', ...)``)."""
    return dict(algorithm=algorithm, **kw)


@pytest.fixture(scope='module')
def i3d():
    model = tm.build(tm.i3d_cfg(), seed=1)
    x = tm.preprocess(model, tm.clip_batch(batch=2, views=3, frames=4,
                                           seed=3))['inputs']
    return model, x


CAPTUM_CASES = [
    ('IntegratedGradients', dict(n_steps=2, baselines='view_axis')),
    ('LayerGradCam', dict(layer='backbone.layer3')),
    pytest.param('DeepLiftShap', dict(baselines='references'),
                 marks=pytest.mark.sweep),
    pytest.param('GuidedGradCam', dict(layer='backbone.layer4'),
                 marks=pytest.mark.sweep),
    # one step per forward in both runs (the one-pass run's Captum call
    # takes every sample-view row at once and then one step per forward;
    # the chunked run's default budget would batch both steps)
    pytest.param('LayerIntegratedGradients',
                 dict(layer='backbone.layer3', n_steps=2,
                      internal_batch_size=1),
                 marks=pytest.mark.sweep),
    pytest.param('Occlusion', dict(sliding_window_shapes=(1, 3, 2, 16, 32),
                                   strides=(1, 3, 2, 16, 32)),
                 marks=pytest.mark.sweep),
]


@pytest.mark.parametrize('algorithm,kw', CAPTUM_CASES)
def test_captum_views_in_passes_equal_one_pass(i3d, algorithm, kw):
    """Tensor options with the view axis are cut to each pass's views;
    Captum's ``attributions`` come back in its own layout."""
    model, x = i3d
    kw = dict(kw)
    g = torch.Generator().manual_seed(5)
    if kw.get('baselines') == 'view_axis':  # one baseline per view
        kw['baselines'] = torch.randn(1, *x.shape[1:], generator=g)
    elif kw.get('baselines') == 'references':
        kw['baselines'] = torch.randn(2, *x.shape[1:], generator=g)
    snap = ModelSnapshot(model)
    a, b, exp = run_chunked('captum', model, x, [1, 2],
                            **_captum(algorithm, **kw))
    assert exp.views_separable
    assert_same_explanations(a, b, ['attributions'])
    assert snap.changes() == []


def test_captum_2d_input_layout():
    """2D (``[B, V*T, C, H, W]``): attributions back in Captum's layout."""
    model = tm.build(tm.tsm_cfg(num_segments=2), seed=1)
    x = tm.preprocess(model, tm.clip_batch(views=2, frames=2, two_d=True,
                                           seed=3))['inputs']
    a, b, _ = run_chunked('captum', model, x, 1, **_captum('Saliency'))
    assert b.extras['attributions'].shape == x.shape
    assert_same_explanations(a, b, ['attributions'])


def test_captum_what_does_not_split_and_the_budget(i3d):
    """Random or cross-view algorithms get every view in one call and say
    so in the plan; a tensor option without the view axis is refused in
    passes with one line; a tiny budget sets IG's steps per forward to 1
    (the option restored), the same maps."""
    model, x = i3d
    exp = build_explainer('captum', model, max_views_per_pass=1, **_captum(
        'NoiseTunnel', init_kwargs=dict(attribution_method='Saliency'),
        nt_samples=1))
    exp.attribute(x, 1)
    assert not exp.views_separable
    assert exp.last_memory_plan['views_per_pass'] == x.shape[1]
    bad = build_explainer('captum', model, max_views_per_pass=1, **_captum(
        'IntegratedGradients', n_steps=2,
        baselines=torch.zeros(1, 5, *x.shape[2:])))
    with pytest.raises(MMXAIError, match='max_views_per_pass=None') as err:
        bad.attribute(x, 1)
    assert '\n' not in str(err.value)
    ig = _captum('IntegratedGradients', n_steps=3)
    ref = build_explainer('captum', model, **ONE_PASS, **ig).attribute(x, 1)
    tiny = build_explainer('captum', model, max_memory='1K', **ig)
    rows, handle = backbone_rows(model)
    try:
        got = tiny.attribute(x, 1)
    finally:
        handle.remove()
    assert max(rows) == x.shape[0]  # one step of one view per forward
    assert tiny.last_memory_plan['views_per_pass'] == 1
    assert tiny.last_memory_plan['batch_size'] == 1
    assert tiny.internal_batch_size == 3  # the option as given
    assert_same_explanations(ref, got, ['attributions'])
