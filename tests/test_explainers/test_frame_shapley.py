"""Frame Shapley values: efficiency, closed forms on additive models, the
planted answer, sampled -> exact, cached features == re-forward == an
independent brute force over permutations, model left as found."""
import itertools
import math

import pytest
import torch

import tiny_models as tm
from mmxai.errors import MMXAIError, UnsupportedModelError
from mmxai.explainers import build_explainer
from mmxai.explainers.frame_shapley import (FrameShapley, exact_shapley,
                                            segment_ids,
                                            variable_length_reason)
from mmxai.testing.coverage import ModelSnapshot
from planted_model import FRAMES, REGION, planted_inputs, planted_model


@pytest.fixture(scope='module')
def tsn():
    return tm.build(tm.tsn_cfg())


@pytest.fixture(scope='module')
def tsn_inputs(tsn):
    return tm.preprocess(tsn, tm.clip_batch(two_d=True, seed=3,
                                            size=16))['inputs']


def explain(model, x, target=None, **opts):
    cfg = dict(type='frame_shapley', progress=False, **opts)
    explainer = build_explainer(cfg, model)
    return explainer.attribute(x) if target is None else \
        explainer.attribute(x, target)


def test_exact_shapley_of_a_hand_game():
    # v(empty)=0, v({0})=1, v({1})=2, v({0,1})=6: phi = (2.5, 3.5)
    phi = exact_shapley(torch.tensor([0., 1., 2., 6.]))
    assert torch.allclose(phi, torch.tensor([2.5, 3.5], dtype=torch.float64))


def test_segment_ids_and_nearest_fill(tsn):
    assert segment_ids(8, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert segment_ids(4, None).tolist() == [0, 1, 2, 3]
    explainer = FrameShapley(tsn, fill='nearest')
    x = torch.arange(8.).view(1, 8, 1, 1).expand(2, 8, 3, 3)
    # frame 3 is 2 from both 1 and 5: the earlier one
    filled = explainer._filled(x, torch.tensor([1, 5]))
    assert filled[0, :, 0, 0].tolist() == [1, 1, 1, 1, 5, 5, 5, 5]
    explainer = FrameShapley(tsn, fill='baseline', baseline=-1.0)
    filled = explainer._filled(x, torch.tensor([1, 5]))
    assert filled[0, :, 0, 0].tolist() == [-1, 1, -1, -1, -1, 5, -1, -1]


def test_efficiency_views_and_segments(tsn):
    """Two samples x two views, groups of two frames: the values add up
    to v(all) - v(empty), v(all) is predict's probability, and every
    frame of a segment shows the segment's value."""
    data = tm.clip_batch(batch=2, views=2, two_d=True, seed=1, size=16)
    x = tm.preprocess(tsn, data)['inputs']
    exp = explain(tsn, x, segments=4, frames_per_view=8)
    ex = exp.extras
    assert ex['exact'] and ex['path'] == 'cached'
    phi = ex['frame_shapley'].double()  # [B, V, 4]
    assert phi.shape == (2, 2, 4)
    gap = (ex['v_all'] - ex['v_empty']).double()
    assert torch.allclose(phi.sum((1, 2)), gap, atol=1e-6)
    probs = exp.probs[torch.arange(2), exp.targets]
    assert torch.allclose(ex['v_all'], probs, atol=1e-5)
    assert torch.allclose(ex['v_empty'], torch.full((2, ), 1 / 5))
    frame_vals = exp.raw_maps[:, :, :, 0, 0]  # [B, V, T]
    assert torch.equal(frame_vals, phi.float()[:, :, ex['segment_ids']])
    assert exp.raw_maps.shape == (2, 2, 8, 16, 16)


def _additive_toy(gain=10.0, seed=0):
    """The planted Recognizer3D with a signed weight per frame: the
    class-0 logit is ``gain * sum_t w_t sum_hw relu(x_0) / (T H W)``."""
    model = planted_model(gain)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(FRAMES, generator=g)
    model.backbone.region_weight.copy_(
        w.view(1, 1, FRAMES, 1, 1).expand_as(model.backbone.region_weight))
    model.cls_head.fc_cls.bias.data.zero_()
    return model, w


def test_additive_toy_gets_each_frame_contribution():
    model, w = _additive_toy()
    x = planted_inputs()
    exp = explain(model, x, 0, score='logit', fill='baseline',
                  baseline='mean', empty='baseline')
    t, s = FRAMES, x.shape[-1]
    known = 10.0 * w * torch.relu(x[0, 0, 0]).sum((1, 2)) / (t * s * s)
    phi = exp.extras['frame_shapley'][0, 0]
    assert torch.allclose(phi, known, atol=1e-6, rtol=1e-4)
    assert abs(float(exp.extras['v_empty'])) < 1e-6  # bias 0, relu(0)=0


def test_planted_frames_get_the_mass():
    model, x = planted_model(), planted_inputs()
    t0, t1 = REGION[:2]
    inside = torch.zeros(FRAMES, dtype=torch.bool)
    inside[t0:t1] = True
    # the class-0 logit: closed form, zero outside the planted frames
    exp = explain(model, x, 0, score='logit', fill='baseline')
    phi = exp.extras['frame_shapley'][0, 0]
    region = torch.zeros_like(x[0, 0, 0])
    h0, h1, w0, w1 = REGION[2:]
    region[t0:t1, h0:h1, w0:w1] = 1
    known = 2000.0 * (torch.relu(x[0, 0, 0]) * region).sum((1, 2)) / \
        region.numel()
    assert torch.allclose(phi, known, rtol=1e-4, atol=1e-5)
    # the probability, v(empty) = the all-baseline clip: frames outside
    # the region are dummies (exactly 0), the region's frames get it all
    exp = explain(model, x, 0, fill='baseline', empty='baseline')
    phi = exp.extras['frame_shapley'][0, 0].double()
    assert float(phi[~inside].abs().max()) == 0.0
    assert bool((phi[inside] > 0.1).all())
    # v(empty) = a class prior (play-fair): the step from the prior to the
    # model on any frame is shared by all, the others stay equal (symmetry)
    exp = explain(model, x, 0, fill='baseline', prior=[0.1, 0.9])
    phi = exp.extras['frame_shapley'][0, 0].double()
    out = phi[~inside]
    assert float(out.max() - out.min()) < 1e-9 and float(out.max()) < 0
    assert bool((phi[inside] > 0.05).all())
    assert math.isclose(float(phi.sum()), 0.5 - 0.1, abs_tol=1e-5)


def test_cached_equals_reforward_and_brute_force(tsn, tsn_inputs):
    """Cached features == re-forward of the sub-clips == Shapley from all
    4! orderings of the model's own ``predict`` on each sub-clip."""
    x = tsn_inputs
    cached = explain(tsn, x, 2, segments=4)
    sub = explain(tsn, x, 2, segments=4, path='subclip')
    assert cached.extras['path'] == 'cached'
    a = cached.extras['frame_shapley'][0, 0]
    b = sub.extras['frame_shapley'][0, 0]
    assert torch.allclose(a, b, atol=1e-6)

    groups = [[0, 1], [2, 3], [4, 5], [6, 7]]

    memo = {(): 1 / 5}  # v(empty): the uniform prior

    def value(players):
        key = tuple(sorted(players))
        if key not in memo:
            frames = [f for p in key for f in groups[p]]
            with torch.no_grad():
                out = tsn(x[:, frames], [tm.ActionDataSample()],
                          mode='predict')
            memo[key] = float(out[0].pred_score[2])
        return memo[key]

    ref = torch.zeros(4, dtype=torch.float64)
    orders = list(itertools.permutations(range(4)))
    for order in orders:
        for k, p in enumerate(order):
            ref[p] += value(order[:k + 1]) - value(order[:k])
    ref /= len(orders)
    assert torch.allclose(a.double(), ref, atol=1e-5)


def test_sampled_converges_to_exact(tsn, tsn_inputs):
    x = tsn_inputs
    ex = explain(tsn, x, 1).extras
    assert ex['exact'] and ex['subsets_per_view'] == 255
    exact = ex['frame_shapley'][0, 0]
    errors, phis = [], []
    for num in (16, 4096):
        ex = explain(tsn, x, 1, max_exact=4, num_samples=num, seed=5).extras
        assert not ex['exact'] and ex['num_permutations'] == num
        phi = ex['frame_shapley'][0, 0]
        # each permutation's marginals telescope: efficiency is exact
        assert math.isclose(float(phi.sum()),
                            float(ex['v_all'] - ex['v_empty']), abs_tol=1e-6)
        errors.append(float((phi - exact).abs().max()))
        phis.append(phi.tolist())
    assert errors[1] < errors[0]
    assert errors[1] < 0.1 * float(exact.abs().max())
    # seeded: the same seed repeats, another seed differs
    first = explain(tsn, x, 1, max_exact=4, num_samples=16, seed=5)
    other = explain(tsn, x, 1, max_exact=4, num_samples=16, seed=6)
    assert torch.equal(first.extras['frame_shapley'][0, 0],
                       torch.tensor(phis[0]))

    assert not torch.equal(other.raw_maps, first.raw_maps)


def test_families_paths_and_model_left_as_found(tsn, tsn_inputs):
    assert variable_length_reason(tsn) is None
    tsm = tm.build(tm.tsm_cfg())
    assert 'ResNetTSM' in variable_length_reason(tsm)
    i3d = tm.build(tm.i3d_cfg())
    assert 'Recognizer3D' in variable_length_reason(i3d)
    with pytest.raises(UnsupportedModelError, match="path='fill'"):
        explain(tsm, tsn_inputs, 0, path='cached')
    for model, x in ((tsn, tsn_inputs), (tsm, tsn_inputs),
                     (i3d, tm.preprocess(i3d, tm.clip_batch())['inputs'])):
        model.train()
        snap = ModelSnapshot(model)
        exp = explain(model, x, 0, segments=2)
        assert not snap.changes()
        assert model.training
        model.eval()
        ex = exp.extras
        assert ex['path'] == ('cached' if model is tsn else 'fill')
        assert math.isclose(float(ex['frame_shapley'].sum()),
                            float(ex['v_all'] - ex['v_empty']), abs_tol=1e-6)


@pytest.mark.parametrize('opts, match', [
    (dict(score='logit', empty='prior'), "empty='prior'"),
    (dict(prior=[0.5, 0.5]), 'prior must be 5'),
    (dict(segments=9), 'segments=9 exceeds'),
    (dict(max_exact=21), 'at most 20'),
    (dict(fill='freeze'), 'unknown fill'),
    (dict(empty='zero'), 'unknown empty'),
])
def test_bad_options_are_one_line(tsn, tsn_inputs, opts, match):
    with pytest.raises(MMXAIError, match=match):
        explain(tsn, tsn_inputs, 0, **opts)
