"""Targets: output indices (a regression head), callables of the scores,
their config forms and records, and per-frame normalisation.

Known answers: on the planted model (class 0 = ``+g feat``, class 1 =
``-g feat + b``) the callable ``s0 - s1`` has twice class 0's gradient, so
every method linear in the score gives twice its raw map; ``lambda s:
s[:, 0]`` is class 0 itself, so every method gives its maps exactly.
"""
import pytest
import torch

import tiny_models as tm
from mmxai.errors import MMXAIError, TargetError
from mmxai.explainers import build_explainer
from mmxai.explainers.explanation import normalize_maps
from mmxai.explainers.targets import (TargetOutputAdapter, describe_target,
                                      resolve_targets)
from mmxai.testing.coverage import ModelSnapshot
from planted_model import planted_inputs, planted_model

#: method -> fast settings; perturbation methods score pre-softmax (one
#: output has no probability)
METHODS = {
    'gradcam': {}, 'gradcam++': {}, 'xgradcam': {}, 'layercam': {},
    'hirescam': {}, 'gradcam_elementwise': {}, 'eigengradcam': {},
    'smooth_gradcam++': dict(num_samples=2),
    'scorecam': dict(top_k=4, batch_size=4),
    'ablationcam': dict(top_k=4, batch_size=4),
    'saliency_tubes': {}, 'saliency': {},
    'integrated_gradients': dict(n_steps=3),
    'smoothgrad': dict(n_samples=2, seed=0),
    'captum': dict(algorithm='Saliency'),
    'occlusion': dict(window=(4, 16, 16), stride=(4, 16, 16),
                      score='logit', batch_size=8, progress=False),
    'rise': dict(num_masks=8, cells=(2, 2, 2), batch_size=8,
                 score='logit'),
}
#: methods whose raw map is linear in the explained score
LINEAR = ('gradcam', 'xgradcam', 'layercam', 'hirescam',
          'gradcam_elementwise', 'eigengradcam', 'saliency_tubes',
          'saliency', 'integrated_gradients', 'smoothgrad', 'captum',
          'occlusion')


def class0(scores):
    return scores[:, 0]


def difference(scores):
    return scores[:, 0] - scores[:, 1]


@pytest.fixture(scope='module')
def planted():
    # seed 1: the classes are not tied (F != 0: Ablation-CAM divides by it)
    return planted_model(), planted_inputs(seed=1)


@pytest.fixture(scope='module')
def regression():
    cfg = tm.i3d_cfg(num_classes=1)
    cfg['cls_head'].update(average_clips='score')
    model = tm.build(cfg)
    x = tm.preprocess(model, tm.clip_batch(views=2))['inputs']
    return model, x


def test_descriptions_and_config_forms():
    assert describe_target('pred') == describe_target(None) == 'pred'
    assert describe_target('gt') == 'gt'
    assert describe_target(3) == describe_target('output:3') == 'output:3'
    assert describe_target(dict(output=3)) == 'output:3'
    assert describe_target([1, 2]) == 'outputs:[1, 2]'
    assert describe_target(difference) == 'callable:difference'
    assert describe_target(lambda s: s[:, 0]) == 'callable:<lambda>'
    scores = torch.zeros(2, 4)
    for spec in (2, '2', 'output:2', ' output : 2 ', dict(output=2),
                 dict(output='2')):
        assert resolve_targets(spec, scores).tolist() == [2, 2]
    for bad in (dict(index=2), dict(output='x'), 'output:9', 'outputs', 7):
        with pytest.raises(TargetError) as err:
            resolve_targets(bad, scores)
        assert '\n' not in str(err.value)
    with pytest.raises(TargetError, match='attribute'):
        resolve_targets(difference, scores)


@pytest.mark.parametrize('method', sorted(METHODS))
def test_callable_of_one_class_is_that_class(planted, method):
    """``lambda s: s[:, 0]`` explains exactly what ``target=0`` does, for
    every method; the model is left as found and the adapter restored."""
    model, x = planted
    explainer = build_explainer(method, model, **METHODS[method])
    adapter = explainer.adapter
    snap = ModelSnapshot(model)
    by_index = explainer.attribute(x, target=0)
    by_callable = explainer.attribute(x, target=class0)
    assert snap.changes() == []
    assert explainer.adapter is adapter
    assert by_callable.settings['target'] == 'callable:class0'
    assert by_index.settings['target'] == 'output:0'
    assert by_callable.targets.tolist() == [0]
    assert by_callable.scores.shape == (1, 1)
    assert torch.allclose(by_callable.scores[:, 0], by_index.scores[:, 0],
                          rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(by_callable.raw_maps, by_index.raw_maps,
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(by_callable.maps, by_index.maps,
                               rtol=1e-4, atol=1e-5)
    assert by_callable.raw_maps.abs().max() > 0


@pytest.mark.parametrize('method', LINEAR)
def test_difference_of_classes_is_twice_class0(planted, method):
    """``s0 - s1 = 2 g feat - b``: twice class 0's gradient (and its
    score differences), so raw maps double and normalised maps agree."""
    model, x = planted
    explainer = build_explainer(method, model, **METHODS[method])
    one = explainer.attribute(x, target=0)
    both = explainer.attribute(x, target=difference)
    want = one.scores[:, 0] - one.scores[:, 1]
    assert torch.allclose(both.scores[:, 0], want, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(both.raw_maps, 2 * one.raw_maps, rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(both.maps, one.maps, rtol=1e-4, atol=1e-5)


def test_regression_head_output_index(regression):
    """A one-output head: ``target=0``, ``'pred'``, ``'output:0'`` and the
    callable of its output are the same explanation; records say which."""
    model, x = regression
    snap = ModelSnapshot(model)
    gc = build_explainer('gradcam', model)
    maps = [gc.attribute(x, t) for t in (0, 'pred', dict(output=0),
                                        lambda s: s[:, 0])]
    for exp in maps[1:]:
        torch.testing.assert_close(exp.raw_maps, maps[0].raw_maps)
        torch.testing.assert_close(exp.scores, maps[0].scores)
    assert maps[0].summary()['target']['spec'] == 'output:0'
    rec = maps[-1].summary(['progress'])['target']
    assert rec['label'] == 'callable:<lambda>' and rec['prob'] is None
    # the scores are the model's own regression output
    with torch.no_grad():
        assert torch.allclose(maps[0].scores, gc.adapter.scores(x),
                              atol=1e-5)
    # a probability of one output is always 1: refused in one line
    for method in ('occlusion', 'saliency', 'rise'):
        with pytest.raises(TargetError, match="score='logit'") as err:
            build_explainer(method, model, score='prob').attribute(x, 0)
        assert '\n' not in str(err.value)
    occ = build_explainer('occlusion', model, score='logit',
                          window=(4, 16, 16), stride=(4, 16, 16),
                          progress=False).attribute(x, 0)
    assert occ.raw_maps.abs().max() > 0
    assert snap.changes() == []


def test_nonlinear_callable_is_view_mean_and_chunk_exact():
    """``F = 1/V sum_v f(s_v)``: the scores match it computed by hand, and
    view chunks give the one-pass maps also for a nonlinear ``f``."""
    model = tm.build(tm.i3d_cfg())
    x = tm.preprocess(model, tm.clip_batch(views=2))['inputs']

    def f(s):
        return s[:, 1] ** 2 - s[:, 2].exp()
    whole = build_explainer('saliency', model, max_views_per_pass=None)
    parts = build_explainer('saliency', model, max_views_per_pass=1)
    a, b = whole.attribute(x, f), parts.attribute(x, f)
    with torch.no_grad():
        per = whole.adapter.scores(x, per_view=True)  # [B, V, K]
    want = f(per.flatten(0, 1)).view(1, 2).mean(1)
    assert torch.allclose(a.scores[:, 0], want, rtol=1e-5, atol=1e-5)
    assert torch.allclose(b.scores[:, 0], want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.raw_maps, b.raw_maps, rtol=1e-4,
                               atol=1e-7)
    # by hand: autograd of F for sample 0
    xx = x.clone().requires_grad_(True)
    value = f(whole.adapter.scores(xx, per_view=True).flatten(0, 1)).mean()
    grad = torch.autograd.grad(value, xx)[0]  # [1, V, C, T, H, W]
    torch.testing.assert_close(a.raw_maps, grad.abs().amax(2),
                               rtol=1e-4, atol=1e-7)


def test_bad_callables_and_refusals(planted):
    model, x = planted
    snap = ModelSnapshot(model)
    gc = build_explainer('gradcam', model)
    adapter = gc.adapter
    cases = [(lambda s: s, 'one value per clip'),
             (lambda s: s.argmax(-1).float(), 'not differentiable'),
             (lambda s: 3.0, 'must return a tensor')]
    for fn, message in cases:
        with pytest.raises(TargetError, match=message) as err:
            gc.attribute(x, fn)
        assert '\n' not in str(err.value)
        assert gc.adapter is adapter  # restored on failure too
    with pytest.raises(TargetError, match='classifier weights') as err:
        build_explainer('cfp', model, depth=1).attribute(x, difference)
    assert '\n' not in str(err.value)
    assert snap.changes() == []
    assert not isinstance(gc.adapter, TargetOutputAdapter)


def test_per_frame_normalisation(planted):
    """Each frame min-max over (H, W): every non-constant frame peaks at
    exactly 1 and bottoms at 0; the joint default keeps frames on one
    scale (only the strongest frame reaches 1)."""
    model, x = planted
    joint = build_explainer('saliency', model).attribute(x, 0)
    frame = build_explainer('saliency', model,
                            normalize='per_frame').attribute(x, 0)
    assert joint.settings['normalize'] == 'joint'
    assert frame.settings['normalize'] == 'per_frame'
    torch.testing.assert_close(frame.raw_maps, joint.raw_maps)
    raw = frame.raw_maps[0, 0]  # [T, H, W]
    for t in range(raw.shape[0]):
        lo, hi = raw[t].min(), raw[t].max()
        if hi - lo > 1e-12:
            want = (raw[t] - lo) / (hi - lo)
            torch.testing.assert_close(frame.maps[0, 0, t], want)
            assert float(frame.maps[0, 0, t].max()) == 1.0
        else:
            assert float(frame.maps[0, 0, t].abs().max()) == 0.0
    peaks = joint.maps[0, 0].flatten(1).amax(1)
    assert float(peaks.max()) == 1.0 and float(peaks.min()) < 1.0
    again = joint.normalized('per_frame')
    torch.testing.assert_close(again.maps, frame.maps)
    assert again.settings['normalize'] == 'per_frame'
    assert joint.settings['normalize'] == 'joint'  # the original untouched
    torch.testing.assert_close(normalize_maps(joint.raw_maps), joint.maps)
    with pytest.raises(MMXAIError, match='normalize'):
        build_explainer('gradcam', model, normalize='frame')
    cap = build_explainer('captum', model, algorithm='Saliency',
                          normalize='per_frame').attribute(x, 0)
    assert cap.settings['normalize'] == 'per_frame'
