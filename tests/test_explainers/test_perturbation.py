"""Perturbation explainers: RISE, occlusion, STEP, LIME, Kernel SHAP."""
import pytest
import torch
from captum.attr import Occlusion

import tiny_models as tm
from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.explainers.view_scorer import ViewScorer
from planted_model import (REGION, argmax_thw, in_region, planted_inputs,
                           planted_model)


@pytest.fixture(scope='module')
def i3d():
    return tm.build(tm.i3d_cfg())


@pytest.fixture(scope='module')
def planted():
    return planted_model(), planted_inputs()


def region_mask(shape):
    m = torch.zeros(shape, dtype=torch.bool)
    t0, t1, h0, h1, w0, w1 = REGION
    m[t0:t1, h0:h1, w0:w1] = True
    return m


def test_view_scorer_matches_model_scores(i3d):
    x = tm.preprocess(i3d, tm.clip_batch(batch=2, views=2))['inputs']
    scorer = ViewScorer(build_explainer('rise', i3d).adapter, x, 'logit')
    with torch.no_grad():
        ref = scorer.adapter.scores(x)
    for b in range(2):
        for v in range(2):
            assert torch.allclose(scorer.clean(b, v), ref[b], atol=1e-5)


@pytest.mark.parametrize('score', ['logit', 'prob'])
def test_occlusion_equals_captum(i3d, score):
    x = tm.preprocess(i3d, tm.clip_batch(views=1))['inputs']
    exp = build_explainer(dict(type='occlusion', window=(4, 12, 12),
                               stride=(3, 10, 10), score=score,
                               baseline=0.3, batch_size=16,
                               progress=False), i3d).attribute(x, 2)

    def forward(inp):
        s = exp_adapter.scores(inp)
        return s.softmax(-1) if score == 'prob' else s
    exp_adapter = build_explainer('occlusion', i3d).adapter
    with torch.no_grad():
        ref = Occlusion(forward).attribute(
            x, sliding_window_shapes=(1, 3, 4, 12, 12),
            strides=(1, 3, 3, 10, 10), baselines=0.3, target=2,
            perturbations_per_eval=16)
    assert torch.allclose(exp.raw_maps, ref[:, :, 0], atol=1e-6,
                          rtol=1e-4)
    assert exp.extras['num_windows'] == 3 * 3 * 3  # last windows clipped


def test_rise_recovers_planted_region(planted):
    model, x = planted
    exp = build_explainer(dict(type='rise', num_masks=256, batch_size=64,
                               cells=(4, 4, 4), progress=False),
                          model).attribute(x, 0)
    m = exp.raw_maps[0, 0]
    assert in_region(argmax_thw(m))
    assert m[region_mask(m.shape)].mean() > m[~region_mask(m.shape)].mean()


def test_step_recovers_planted_region(planted):
    model, x = planted
    exp = build_explainer(dict(type='step', max_iter=60, core_start=30,
                               areas=[0.025, 0.05], perturbation='fade',
                               batch_size=1, progress=False),
                          model).attribute(x, 0)
    m = exp.raw_maps[0, 0]
    assert in_region(argmax_thw(m))
    inside = m[region_mask(m.shape)].mean()
    assert inside > 3 * m[~region_mask(m.shape)].mean()
    assert exp.extras['area_masks'].shape == (1, 1, 2, 8, 32, 32)


@pytest.mark.parametrize('method', ['lime', 'kernel_shap'])
def test_segment_methods_find_planted_region(planted, method):
    model, x = planted
    exp = build_explainer(dict(type=method, num_samples=200,
                               segmentation='grid', grid=(4, 4, 4),
                               baseline='mean', batch_size=50,
                               progress=False), model).attribute(x, 0)
    m = exp.raw_maps[0, 0]
    seg = exp.extras['segments'][0, 0]
    best = seg[argmax_thw(m)]
    assert (region_mask(m.shape) & (seg == best)).any()


def test_kernel_shap_efficiency(planted):
    model, x = planted
    exp = build_explainer(dict(type='kernel_shap', num_samples=64,
                               segmentation='grid', grid=(2, 2, 2),
                               baseline='mean', score='logit',
                               batch_size=32, progress=False),
                          model).attribute(x, 0)
    seg = exp.extras['segments'][0, 0]
    phi = torch.stack([exp.raw_maps[0, 0][seg == s][0] for s in range(8)])
    with torch.no_grad():
        full = model.cls_head  # noqa: F841
        ad = build_explainer('rise', model).adapter
        diff = ad.scores(x)[0, 0] - ad.scores(torch.zeros_like(x))[0, 0]
    assert abs(float(phi.sum() - diff)) < 1e-4


@pytest.mark.parametrize('cfg', [
    dict(type='rise', num_masks=16, batch_size=8),
    dict(type='lime', num_samples=16, segmentation='slic', n_segments=20),
    dict(type='kernel_shap', num_samples=16, segmentation='grid',
         grid=(2, 2, 2)),
    dict(type='step', max_iter=1, areas=[0.1]),
])
def test_same_seed_same_map_multiview(i3d, cfg):
    x = tm.preprocess(i3d, tm.clip_batch(views=2))['inputs']
    cfg = dict(cfg, progress=False)
    a = build_explainer(cfg, i3d).attribute(x)
    b = build_explainer(cfg, i3d).attribute(x)
    assert a.raw_maps.shape == (1, 2, 8, 32, 32)
    assert torch.equal(a.raw_maps, b.raw_maps)
    if cfg['type'] != 'step':
        c = build_explainer(dict(cfg, seed=1), i3d).attribute(x)
        assert not torch.equal(a.raw_maps, c.raw_maps)


def test_recognizer2d_rise_and_occlusion():
    model = tm.build(tm.tsm_cfg())
    x = tm.preprocess(model, tm.clip_batch(two_d=True))['inputs']
    for cfg in (dict(type='rise', num_masks=4, batch_size=4), dict(
            type='occlusion', window=(8, 32, 32), stride=(8, 32, 32))):
        exp = build_explainer(dict(cfg, progress=False), model).attribute(x)
        assert exp.raw_maps.shape == (1, 1, 8, 32, 32)
        assert torch.isfinite(exp.raw_maps).all()


def test_model_left_unchanged_and_bad_options(i3d):
    before = {k: v.clone() for k, v in i3d.state_dict().items()}
    x = tm.preprocess(i3d, tm.clip_batch())['inputs']
    build_explainer(dict(type='step', max_iter=1, areas=[0.1],
                         progress=False), i3d).attribute(x)
    assert all(torch.equal(v, i3d.state_dict()[k])
               for k, v in before.items())
    assert all(p.grad is None and p.requires_grad
               for p in i3d.parameters())
    with pytest.raises(MMXAIError):
        build_explainer(dict(type='rise', score='bogus'), i3d)
    with pytest.raises(MMXAIError):
        build_explainer(dict(type='occlusion', window=(4, 8, 8),
                             stride=(4, 16, 16)), i3d).attribute(x)
    with pytest.raises(MMXAIError):
        build_explainer(dict(type='step', areas=[1.5]), i3d)


class _FlatScorer:
    """A scorer whose score ignores the clip: only the area loss acts."""

    num_views = 1

    def __init__(self, video):
        self.video = video

    def logits(self, clips):
        return clips.flatten(1)[:, :4] * 0

    def combine(self, b, v, logits):
        return logits

    def __call__(self, b, v, clips):
        return self.logits(clips)


@pytest.mark.parametrize('balance', [True, False])
def test_step_mask_has_no_border_bias(i3d, balance):
    from mmxai.explainers.progress import Progress
    exp = build_explainer(dict(type='step', variant='3d_ep', max_iter=25,
                               balance_edges=balance, progress=False), i3d)
    video = torch.randn(1, 1, 3, 4, 64, 64)
    mask, _ = exp.optimise(_FlatScorer(video), 0, 0, 0, [0.05],
                           Progress(1, enabled=False))
    m = mask[0]
    border = torch.ones_like(m, dtype=torch.bool)
    border[:, 6:-6, 6:-6] = False
    gap = float(m[border].mean() - m[~border].mean())
    if balance:  # the border no longer outlives the interior
        assert gap < 0.0 and not border[tuple(
            int(i) for i in torch.unravel_index(m.argmax(), m.shape))]
    else:  # plain SGD: border bumps, cut by the crop, lag behind
        assert gap > 0.05


def test_one_view_runs_one_clean_forward(i3d):
    """The clean clip is scored once: windows in batches + 1 forward (the
    first call also probes one view for the memory estimate, once per
    explainer and view shape)."""
    x = tm.preprocess(i3d, tm.clip_batch(views=1))['inputs']
    calls = []
    handle = i3d.backbone.register_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]))
    explainer = build_explainer(dict(type='occlusion', window=(4, 12, 12),
                                     stride=(3, 10, 10), batch_size=8,
                                     progress=False), i3d)
    try:
        exp = explainer.attribute(x, 1)
        assert calls == [1, 1, 8, 8, 8, 3]  # probe, clean, windows
        del calls[:]
        exp = explainer.attribute(x, 1)
    finally:
        handle.remove()
    assert exp.extras['num_windows'] == 27
    assert calls == [1, 8, 8, 8, 3]
    with torch.no_grad():
        ref = build_explainer('occlusion', i3d).adapter.scores(x)
    assert torch.allclose(exp.scores, ref, atol=1e-5)
