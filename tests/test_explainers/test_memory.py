"""Bounded memory for every method: views (and perturbation / step batches)
in chunks equal one pass, the memory budget, and recovery from
out-of-memory errors (simulated on CPU: a forward hook raises CUDA's
``OutOfMemoryError`` above a size)."""
import pytest
import torch

from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.explainers.memory import parse_memory
from mmxai.testing.memory_probes import (OOMAbove, assert_same_explanations,
                                        backbone_rows)
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsm_cfg

GRADIENT_CASES = [
    ('saliency', dict(score='logit')),
    ('saliency', dict(score='prob')),
    ('integrated_gradients', dict(n_steps=2, score='logit')),
    ('integrated_gradients', dict(n_steps=2, score='prob',
                                  baseline='blur')),
    ('smoothgrad', dict(n_samples=2, score='logit')),
]
GRID = dict(segmentation='grid', grid=(2, 2, 2))
#: (method, options, 2D too, scores): LIME / Kernel SHAP share RISE's and
#: occlusion's view loop, STEP has its own objective
PERTURBATION_CASES = [
    ('occlusion', dict(window=(4, 16, 16), stride=(4, 16, 16)), True,
     ('logit', 'prob')),
    ('rise', dict(num_masks=6, cells=(2, 2, 2)), True, ('logit', 'prob')),
    ('lime', dict(num_samples=6, **GRID), False, ('prob', )),
    ('kernel_shap', dict(num_samples=6, **GRID), False, ('logit', )),
    ('step', dict(max_iter=1, areas=[0.1, 0.5]), False, (None, )),
]


def make(method, model, **opts):
    """``build_explainer``; CAMs take no ``progress``."""
    if method in ('gradcam', 'gradcam++', 'saliency_tubes'):
        opts.pop('progress', None)
    return build_explainer(method, model, **opts)


@pytest.fixture(scope='module')
def models():
    return {False: build(i3d_cfg(), seed=1), True: build(tsm_cfg(), seed=1)}


def inputs(model, two_d, views=5, batch=2):
    if two_d:  # the tiny TSM is the slow one
        views, batch = min(views, 3), 1
    return preprocess(model, clip_batch(batch=batch, views=views,
                                        two_d=two_d, seed=3,
                                        labels=[1, 3][:batch]))


@pytest.mark.parametrize('two_d', [False, True])
@pytest.mark.parametrize('method,opts', GRADIENT_CASES)
def test_gradient_methods_in_view_chunks_equal_one_pass(models, method,
                                                        opts, two_d):
    model = models[two_d]
    data = inputs(model, two_d)
    x = data['inputs']
    one = make(method, model, max_views_per_pass=None,
                          batch_size=2, progress=False, **opts)
    chunked = make(method, model, max_views_per_pass=2,
                              batch_size=2, progress=False, **opts)
    extras = ('convergence_delta', 'score_difference') \
        if method == 'integrated_gradients' else ()
    for target in ('pred', 'gt'):
        a = one.attribute(x, target, data['data_samples'])
        rows, handle = backbone_rows(model)
        try:
            b = chunked.attribute(x, target, data['data_samples'])
        finally:
            handle.remove()
        frames = 8 if two_d else 1
        assert max(rows) <= 2 * 2 * frames  # batch 2 x 2 views per pass
        assert_same_explanations(a, b, extras)
        assert b.extras['attributions'].shape == a.extras[
            'attributions'].shape
    assert 'scores' not in vars(chunked.adapter)


def test_ig_chunked_completeness(models):
    """The chunks' convergence deltas add up: sum(map) - (S(x) - S(x0))."""
    model = models[False]
    x = inputs(model, False)['inputs']
    exp = build_explainer('integrated_gradients', model, n_steps=4,
                          max_views_per_pass=2, progress=False)
    out = exp.attribute(x, [1, 3])
    with torch.no_grad():
        s = exp.adapter.scores(x)[:, [1, 3]].diagonal()
        s0 = exp.adapter.scores(torch.zeros_like(x))[:, [1, 3]].diagonal()
    total = out.raw_maps.flatten(1).sum(1)
    torch.testing.assert_close(out.extras['score_difference'], s - s0,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.extras['convergence_delta'],
                               total - (s - s0), rtol=1e-4, atol=1e-5)


PERTURBATION_RUNS = [(m, o, two_d, score)
                     for m, o, with_2d, scores in PERTURBATION_CASES
                     for two_d in ((False, True) if with_2d else (False, ))
                     for score in scores]


@pytest.mark.parametrize('method,opts,two_d,score', PERTURBATION_RUNS)
def test_perturbation_methods_in_chunks_equal_one_pass(models, method, opts,
                                                       two_d, score):
    """Clean views scored in passes of 2 (no forward of all views), batches
    of 1 perturbed clip, equal one pass with batches of 8; a perturbed
    view's 'prob' uses the other views' clean softmaxes either way."""
    opts = dict(opts, score=score) if score else dict(
        opts, objective='log_prob')
    model = models[two_d]
    data = inputs(model, two_d, views=3) if method != 'step' else inputs(
        model, two_d, views=3, batch=1)
    x = data['inputs']
    one = make(method, model, max_views_per_pass=None,
               batch_size=8, progress=False, **opts)
    chunked = make(method, model, max_views_per_pass=2,
                   batch_size=1, progress=False, **opts)
    a = one.attribute(x, 'pred', data['data_samples'])
    rows, handle = backbone_rows(model)
    try:
        b = chunked.attribute(x, 'pred', data['data_samples'])
    finally:
        handle.remove()
    frames = 8 if two_d else 1
    assert max(rows) <= 2 * frames
    assert_same_explanations(a, b)


def test_rise_is_independent_of_batch_size(models):
    model = models[False]
    x = inputs(model, False, views=2, batch=1)['inputs']
    maps = [build_explainer('rise', model, num_masks=10, batch_size=n,
                            progress=False).attribute(x, 1).raw_maps
            for n in (10, 3)]
    torch.testing.assert_close(maps[1], maps[0], rtol=1e-5, atol=1e-7)


def test_parse_memory():
    assert parse_memory('4G') == 4 * 2 ** 30
    assert parse_memory('512M') == 512 * 2 ** 20
    assert parse_memory('1.5GB') == int(1.5 * 2 ** 30)
    assert parse_memory('2GiB') == 2 * 2 ** 30
    assert parse_memory(1000) == 1000
    assert parse_memory(None) is None and parse_memory('auto') is None
    for bad in ('four', '-1G', '0'):
        with pytest.raises(MMXAIError) as err:
            parse_memory(bad)
        assert '\n' not in str(err.value)


def test_memory_budget_sets_views_and_batches(models):
    """A tiny budget: one view per pass, batch 1, the same result; the
    option is a method option (CLI --max-memory) and restored after."""
    model = models[False]
    data = inputs(model, False, views=3)
    x = data['inputs']
    for method, opts in (('gradcam', {}),
                         ('integrated_gradients', dict(n_steps=2)),
                         ('occlusion', dict(window=(4, 16, 16),
                                            stride=(4, 16, 16)))):
        ref = make(method, model, max_views_per_pass=None,
                              max_memory='64G', progress=False,
                              **opts).attribute(x, 'pred')
        small = make(method, model, max_memory='1K',
                                progress=False, **opts)
        rows, handle = backbone_rows(model)
        try:
            got = small.attribute(x, 'pred')
        finally:
            handle.remove()
        plan = small.last_memory_plan
        assert plan['views_per_pass'] == 1 and plan['budget'] == 1024
        assert plan['view_graph_bytes'] > plan['view_forward_bytes'] > 0
        assert max(rows) <= 2  # one view of each of the 2 samples
        if hasattr(small, 'batch_size'):
            assert plan['batch_size'] == 1 and small.batch_size == 8
        assert_same_explanations(ref, got)
    # the default: a share of the machine's available memory
    exp = make('gradcam', model, max_views_per_pass=None)
    exp.attribute(x, 'pred')
    assert exp.last_memory_plan['budget'] > 0
    assert exp.last_memory_plan['views_per_pass'] == 3
    with pytest.raises(MMXAIError, match='max_memory'):
        build_explainer('gradcam', model, max_memory='lots')


def test_toolbox_budget_is_the_toolboxs_inference_memory(models):
    """With ``max_memory='toolbox'`` the budget is what the toolbox's one
    gradient-free pass of all B x V views holds (B V forward), so RISE's
    batch of 8 perturbed clips shrinks to B V = 6 rows per forward, the
    CAM's views per pass follow, and the results stay those of one pass."""
    model = models[False]
    x = inputs(model, False, views=3)['inputs']  # B = 2 samples, V = 3
    opts = dict(num_masks=16, cells=(2, 2, 2), batch_size=8,
                progress=False)
    ref = make('rise', model, max_views_per_pass=None, max_memory='64G',
               **opts).attribute(x, 'pred')
    exp = make('rise', model, max_memory='toolbox', **opts)
    rows, handle = backbone_rows(model)
    try:
        got = exp.attribute(x, 'pred')
    finally:
        handle.remove()
    plan = exp.last_memory_plan
    assert plan['budget'] == 2 * 3 * plan['view_forward_bytes']
    assert plan['batch_size'] == 6 and exp.batch_size == 8
    assert max(rows) == 6  # never more rows than the toolbox's pass
    assert_same_explanations(ref, got)
    cam = make('gradcam', model, max_views_per_pass=None,
               max_memory='toolbox')
    cam.attribute(x, 'pred')
    plan = cam.last_memory_plan
    assert plan['budget'] == 2 * 3 * plan['view_forward_bytes']
    assert plan['views_per_pass'] == max(1, min(
        3, plan['budget'] // (2 * plan['view_graph_bytes'])))



def test_explicit_budget_turns_the_retained_heap_off(models, monkeypatch):
    """The retained heap (``mmxai.utils.heap``) is for the default budget
    only: under ``max_memory='toolbox'`` or a size its fragmentation would
    add to the peak beyond the budget, so the block is entered disabled."""
    import mmxai.explainers.base as base
    seen = []
    real = base.retained_heap

    def spy(enabled=True):
        seen.append(enabled)
        return real(enabled)

    monkeypatch.setattr(base, 'retained_heap', spy)
    model = models[False]
    x = inputs(model, False, views=2, batch=1)['inputs']
    opts = dict(num_masks=4, cells=(2, 2, 2), progress=False)
    for budget, retained in ((None, True), ('toolbox', False),
                             ('2G', False)):
        exp = make('rise', model, max_memory=budget, **opts)
        assert exp.retains_heap(torch.device('cpu')) is retained
        assert not exp.retains_heap(torch.device('meta'))
        exp.attribute(x, 'pred')
        assert seen.pop() is retained
    cam = make('gradcam', model)  # one forward: never retained
    assert not cam.retains_heap(torch.device('cpu'))

def model_state(model):
    return dict(
        training=[m.training for m in model.modules()],
        requires_grad=[p.requires_grad for p in model.parameters()],
        grads=[p.grad is None for p in model.parameters()],
        hooks=sum(len(m._forward_hooks) + len(m._forward_pre_hooks) +
                  len(m._backward_hooks) for m in model.modules()))


@pytest.mark.parametrize('method,opts', [
    ('gradcam', {}),
    ('saliency_tubes', {}),
    ('integrated_gradients', dict(n_steps=4, batch_size=4)),
    ('smoothgrad', dict(n_samples=3, batch_size=3)),
    ('occlusion', dict(window=(4, 16, 16), stride=(4, 16, 16),
                       batch_size=8)),
    ('rise', dict(num_masks=6, cells=(2, 2, 2), batch_size=6)),
    ('step', dict(max_iter=1, areas=[0.1, 0.5])),
])
def test_out_of_memory_halves_the_chunk_and_retries(models, method, opts):
    model = build(i3d_cfg(), seed=1)
    data = inputs(model, False, views=4, batch=1)
    x = data['inputs']
    ref = make(method, model, max_views_per_pass=None,
                          progress=False, **opts).attribute(x, 'pred')
    model.train()  # the explainer runs in eval mode and puts this back
    model.backbone.conv1.conv.weight.requires_grad_(False)
    before = model_state(model)
    oom = OOMAbove(model, 1)
    # a budget far above the tiny model's needs: the plan starts at every
    # view and full batches, which the simulated device then refuses
    explainer = make(method, model, max_views_per_pass=None,
                     max_memory='64G', progress=False, **opts)
    try:
        got = explainer.attribute(x, 'pred')
        assert oom.raised > 0
        assert explainer.last_memory_plan['views_per_pass'] == 1
        if explainer.batch_attr:
            assert explainer.last_memory_plan['batch_size'] == 1
            assert getattr(explainer, explainer.batch_attr) == \
                opts.get('batch_size')
    finally:
        oom.handle.remove()
    assert model_state(model) == before
    model.eval()
    assert_same_explanations(ref, got)


def test_out_of_memory_with_one_view_is_one_line(models):
    model = models[False]
    x = inputs(model, False, views=2, batch=1)['inputs']
    before = model_state(model)
    for method in ('gradcam', 'integrated_gradients', 'occlusion'):
        oom = OOMAbove(model, 0)
        try:
            with pytest.raises(MMXAIError) as err:
                make(method, model, n_steps=2,
                                progress=False).attribute(x, 1) \
                    if method == 'integrated_gradients' else \
                    make(method, model, progress=False
                                    ).attribute(x, 1)
        finally:
            oom.handle.remove()
        msg = str(err.value)
        assert '\n' not in msg and 'out of memory' in msg
        assert 'one view per pass' in msg
        assert model_state(model) == before
