"""LOCO and univariate predictors over supervoxels (REVEX)."""
import pytest
import torch

from mmxai.baselines import make_baseline
from mmxai.explainers import build_explainer
from mmxai.testing.coverage import ModelSnapshot
from planted_model import (FRAMES, SIZE, argmax_thw, in_region,
                           planted_inputs, planted_model)

#: a grid whose cells tile REGION exactly: 1 frame x 8 rows x 2 columns
ALIGNED = (FRAMES, SIZE // 8, SIZE // 2)


def region_mask():
    m = torch.zeros(FRAMES, SIZE, SIZE, dtype=torch.bool)
    for t in range(FRAMES):
        for h in range(SIZE):
            for w in range(SIZE):
                m[t, h, w] = in_region((t, h, w))
    return m


@pytest.fixture(scope='module')
def planted():
    return planted_model(), planted_inputs()


@pytest.mark.parametrize('method,score', [('loco', 'prob'),
                                          ('univariate', 'logit')])
def test_planted_region(planted, method, score):
    """Only REGION moves the score: its segments get the (positive) values,
    every other segment exactly nothing. (UP scores in logits: with the
    whole clip removed the planted model's probability underflows.)"""
    model, x = planted
    snap = ModelSnapshot(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp = build_explainer(dict(type=method, segmentation='grid',
                               grid=ALIGNED, baseline='mean', score=score,
                               batch_size=128, progress=False),
                          model).attribute(x, 0)
    assert snap.changes() == []
    assert all(torch.equal(v, model.state_dict()[k])
               for k, v in before.items())
    m = exp.raw_maps[0, 0]
    region = region_mask()
    assert in_region(argmax_thw(m))
    assert (m[region] > 0.1 * m.max()).all()
    assert m[~region].abs().max() < 1e-4 * m.max()
    assert exp.extras['segments'].shape == (1, 1, FRAMES, SIZE, SIZE)


def additive_model(gain: float = 10.0, seed: int = 0):
    """The planted model with random positive voxel weights ``w``: on clips
    with a positive channel 0 its class-0 logit is
    ``gain * mean(w * x_0) + bias``, additive over any segmentation."""
    model = planted_model(gain)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.backbone.region_weight
        w.copy_(torch.rand(w.shape, generator=g) + 0.1)
    return model


@pytest.mark.parametrize('method', ['loco', 'univariate'])
def test_additive_model_gives_the_contributions(method):
    """Two views with their own SLIC segments, blurred removal: each
    segment's value is ``gain / N sum_s w (x_0 - blur(x)_0)`` divided by the
    number of views (view-averaged logit), for LOCO and UP alike."""
    gain = 10.0
    model = additive_model(gain)
    x = torch.cat([planted_inputs(0), planted_inputs(1)], 1)  # 2 views
    exp = build_explainer(dict(type=method, n_segments=24, score='logit',
                               batch_size=16, progress=False),
                          model).attribute(x, 0)
    w = model.backbone.region_weight[0, 0]
    n_vox = w.numel()
    for v in range(2):
        seg = exp.extras['segments'][0, v]
        n_seg = int(seg.max()) + 1
        assert n_seg > 4
        delta = (x[0, v] - make_baseline(x[0, v], 'blur'))[0]
        contrib = torch.zeros(n_seg, dtype=torch.float64).index_add_(
            0, seg.flatten(), (w * delta).flatten().double())
        expected = gain * contrib / n_vox / 2
        got = exp.raw_maps[0, v]
        for s in range(n_seg):
            vals = got[seg == s]
            assert torch.allclose(vals, vals[0].expand_as(vals))
            assert float(vals[0]) == pytest.approx(float(expected[s]),
                                                   abs=1e-5, rel=1e-3)


@pytest.mark.parametrize('method,extra', [('loco', 0), ('univariate', 1)])
def test_one_forward_per_segment(planted, method, extra):
    """``S`` perturbed clips (LOCO) or ``S + 1`` (UP, the empty clip too),
    ``batch_size`` per forward, after the clean forward."""
    model, x = planted
    explainer = build_explainer(dict(type=method, segmentation='grid',
                                     grid=(2, 2, 2), batch_size=3,
                                     progress=False), model)
    explainer.attribute(x, 0)  # the first call also probes memory
    calls = []
    handle = model.backbone.register_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]))
    try:
        exp = explainer.attribute(x, 0)
    finally:
        handle.remove()
    assert calls[0] == 1 and max(calls[1:]) <= 3
    assert sum(calls[1:]) == 8 + extra
    assert exp.method == method
    assert 'num_samples' not in exp.settings


def test_names_and_bad_options(planted):
    model, _ = planted
    assert build_explainer('up', model).name == 'univariate'
    assert build_explainer('supervoxel_loco', model).name == 'loco'
    from mmxai.errors import MMXAIError
    with pytest.raises(MMXAIError):
        build_explainer(dict(type='loco', segmentation='watershed'), model)
    with pytest.raises(MMXAIError):
        build_explainer(dict(type='univariate', batch_size=0), model)
