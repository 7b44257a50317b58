"""Temporal masks (Manttari et al. 2020): the perturbations by hand, the
planted-answer model, views, options, model state."""
import json
import os

import pytest
import torch

import tiny_models as tm
from mmxai.errors import MMXAIError, UnsupportedModelError
from mmxai.explainers import TemporalMask, build_explainer
from mmxai.explainers.temporal_mask import (freeze_matrix, mix_frames,
                                            perturb, reverse_matrix,
                                            tv_norm, write_temporal_mask)
from mmxai.testing.coverage import ModelSnapshot
from planted_model import REGION, planted_inputs, planted_model

T0, T1 = REGION[:2]


def reverse_runs(strength, threshold=0.1):
    """The authors' ``find_submasks_from_mask`` written as their loop:
    maximal runs of consecutive frames with strength above ``threshold``
    (the reference the vectorised ``reverse_partners`` is checked against)."""
    runs, cur = [], []
    for j, v in enumerate(strength):
        if v > threshold:
            cur.append(j)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def frames(values):
    """``[1, 1, T, 1, 1]`` clip whose frame ``t`` holds ``values[t]``."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1, 1, 1)


def as_list(clip):
    return clip.flatten().tolist()


def freeze_loop(x, s):
    """The authors' recursion, written out: y_0 = x_0,
    y_t = (1 - s_t) x_t + s_t y_{t-1}."""
    y = [x[:, :, 0]]
    for t in range(1, x.shape[2]):
        y.append((1 - s[t]) * x[:, :, t] + s[t] * y[-1])
    return torch.stack(y, 2)


def test_freeze_by_hand():
    x = frames([1, 2, 3, 4])
    s = torch.tensor([[0.3, 1.0, 0.5, 0.0]], dtype=torch.float64)
    # y0 = 1; y1 = frame 0 (frozen); y2 = .5*3 + .5*1; y3 = 4 (kept)
    assert as_list(perturb(x, s, 'freeze')) == pytest.approx([1, 1, 2, 4])
    # a run of fully masked frames freezes on the last kept one
    s = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert as_list(perturb(x, s, 'freeze')) == pytest.approx([1, 2, 2, 2])


def test_freeze_matrix_matches_recursion_and_is_differentiable():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 3, 3, generator=g, dtype=torch.float64)
    s = torch.rand(1, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(perturb(x, s, 'freeze'), freeze_loop(x, s[0]))
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda m: perturb(x, m, 'freeze'), (s, ))
    # the matrix rows are convex weights (frames are mixed, not scaled)
    w = freeze_matrix(s.detach())
    assert torch.allclose(w.sum(-1), torch.ones(1, 6, dtype=w.dtype))


def test_reverse_by_hand():
    x = frames([0, 10, 20, 30, 40, 50, 60])
    s = torch.tensor([[0.0, 0.8, 0.5, 0.2, 0.05, 1.0, 1.0]],
                     dtype=torch.float64)
    assert reverse_runs(s[0].tolist()) == [[1, 2, 3], [5, 6]]
    # run 1-3: frames 1 and 3 swap, blended by s_1 = 0.8, 2 stays (centre);
    # frame 4 is below 0.1; run 5-6 swaps fully
    ref = [0, 0.2 * 10 + 0.8 * 30, 20, 0.2 * 30 + 0.8 * 10, 40, 60, 50]
    assert as_list(perturb(x, s, 'reverse')) == pytest.approx(ref)
    # a full mask plays the whole clip backwards
    assert as_list(perturb(x, torch.ones(1, 7, dtype=torch.float64),
                           'reverse')) == pytest.approx(
                               [60, 50, 40, 30, 20, 10, 0])
    s.requires_grad_(True)
    y = mix_frames(x, reverse_matrix(s))
    (grad, ) = torch.autograd.grad(y[0, 0, 1, 0, 0], s)
    assert grad[0, 1] == pytest.approx(30 - 10)  # d y1 / d s1 = x3 - x1


def test_tv_norm_is_the_authors_double_sum():
    m = torch.tensor([[0.0, 1.0, 1.0, 0.5]])
    # u = 1: |0-1|^3 + |1-1|^3; u = 2: |1-1|^3 + |0.5-1|^3
    assert float(tv_norm(m, 3.0)) == pytest.approx(1 + 0.125)


@pytest.fixture(scope='module')
def planted():
    """The planted model; frames outside the evidence frames are darker
    (channel 0 - 0.4), so freezing an evidence frame on an earlier frame
    removes evidence; the clean score stays 0.5."""
    x = planted_inputs()
    outside = [t for t in range(x.shape[3]) if not T0 <= t < T1]
    x[:, :, 0, outside] -= 0.4
    return planted_model(), x


@pytest.mark.parametrize('mode', ['delete', 'preserve'])
def test_mask_mass_on_planted_frames(planted, mode):
    model, x = planted
    snap = ModelSnapshot(model)
    exp = build_explainer(dict(type='temporal_mask', mode=mode,
                               iterations=60, progress=False),
                          model).attribute(x, 0)
    assert snap.changes() == []
    m = exp.extras['temporal_masks'][0, 0]
    assert T0 <= int(m.argmax()) < T1
    inside = m[T0:T1].sum()
    assert inside > 0.7 * m.sum()
    assert exp.raw_maps.shape == (1, 1, 8, 32, 32)
    assert torch.equal(exp.raw_maps[0, 0, :, 5, 7], m)  # broadcast on H, W
    orig = float(exp.extras['original_score'][0, 0])
    frozen = float(exp.extras['freeze_score'][0, 0])
    assert orig == pytest.approx(0.5, abs=1e-4)
    if mode == 'delete':
        assert frozen < 0.05  # the mask destroys the score
    else:
        assert frozen > 0.4  # the kept frames keep it


def test_reverse_runs_and_reports_scores(planted, tmp_path):
    model, x = planted
    snap = ModelSnapshot(model)
    exp = TemporalMask(model, perturbation='reverse', iterations=20,
                       progress=False).attribute(x, 0)
    assert snap.changes() == []
    ex = exp.extras
    # the central start reverses frames 3-4 (both evidence frames); the
    # descent may only grow it (TV) or shrink it: the score stays at most
    # the clean one and the mask's mass on the evidence frames
    assert ex['reverse_score'][0, 0] <= ex['original_score'][0, 0] + 1e-6
    m = ex['temporal_masks'][0, 0]
    assert m[T0:T1].sum() > m.sum() - m[T0:T1].sum()
    assert exp.settings['perturbation'] == 'reverse'
    # the scores are recomputed by hand from the mask
    m = ex['temporal_masks'][0]
    clip = x[0].clone()
    with torch.no_grad():
        s = TemporalMask(model).adapter.scores(
            perturb(clip, m, 'reverse')[:, None]).softmax(-1)[0, 0]
    assert float(s) == pytest.approx(float(ex['reverse_score'][0, 0]),
                                     rel=1e-4, abs=1e-6)
    # the record's extra file shows the scores
    path, = write_temporal_mask(exp, str(tmp_path))
    with open(path) as f:
        rec = json.load(f)
    assert os.path.basename(path) == 'temporal_mask.json'
    assert rec['views'][0]['reverse_score'] == pytest.approx(
        float(ex['reverse_score'][0, 0]))


def test_views_own_masks_and_batch_invariance(planted):
    model, x = planted
    x = torch.cat([x, planted_inputs(seed=1)], 1)  # two views
    snap = ModelSnapshot(model)
    kw = dict(iterations=5, init='uniform', progress=False)
    one = TemporalMask(model, batch_size=1, **kw).attribute(x, 0)
    two = TemporalMask(model, batch_size=2, **kw).attribute(x, 0)
    assert snap.changes() == []
    assert one.raw_maps.shape == (1, 2, 8, 32, 32)
    assert torch.allclose(one.extras['temporal_masks'],
                          two.extras['temporal_masks'], atol=1e-5)
    # two views: their own masks (different clips, different gradients)
    m = one.extras['temporal_masks'][0]
    assert not torch.allclose(m[0], m[1])


def test_single_frame_is_not_applicable():
    model = tm.build(tm.i3d_cfg())
    x = tm.preprocess(model, tm.clip_batch(frames=1))['inputs']
    with pytest.raises(UnsupportedModelError, match='at least 2 frames'):
        TemporalMask(model, iterations=1, batch_size=1,
                     progress=False).attribute(x, 0)


@pytest.mark.parametrize('options', [
    dict(perturbation='blur'), dict(mode='keep'), dict(init='random'),
    dict(score='softmax'), dict(iterations=0), dict(iterations='10'),
    dict(lr=0), dict(lr='fast'), dict(lambda1=-1), dict(beta=0.5),
    dict(batch_size=True), dict(lambda2=float('nan'))])
def test_bad_options_are_one_line(planted, options):
    with pytest.raises(MMXAIError) as err:
        TemporalMask(planted[0], **options)
    assert '\n' not in str(err.value)


# ------------------------------------------- a plain reference of the loop
def reference_reverse(clip, s):
    """The authors' ``perturb_sequence(..., 'reverse')`` written out on one
    view ``[C, T, H, W]``: runs above 0.1 found by a loop, each pair
    swapped and blended by its earlier frame's strength."""
    y = [clip[:, t] for t in range(clip.shape[1])]
    for run in reverse_runs(s.detach().tolist()):
        for u in range(len(run) // 2):
            a, b = run[u], run[-(u + 1)]
            y[a] = (1 - s[a]) * clip[:, a] + s[a] * clip[:, b]
            y[b] = (1 - s[a]) * clip[:, b] + s[a] * clip[:, a]
    return torch.stack(y, 1)


def reference_perturb(clip, s, perturbation):
    if perturbation == 'freeze':
        return freeze_loop(clip[None], s)[0]
    return reference_reverse(clip, s)


def reference_mask(model, x, v, target, perturbation, mode, init,
                   iterations, score, lr=0.2, lam1=0.01, lam2=0.02):
    """One view's mask and scores, one forward per scoring, plain loops:
    the other views clean (view-averaged as ``predict``), Adam on the
    logits, the authors' central start (delete mode) or m = 0.5."""
    adapter = TemporalMask(model).adapter
    views = x.shape[1]

    def one(clip):  # [C, T, H, W] -> [K] probabilities or logits
        z = adapter.scores(clip[None, None])[0]
        return z.float().softmax(-1) if score == 'prob' else z

    with torch.no_grad():
        others = sum(one(x[0, u]) for u in range(views) if u != v)

    def scores_of(clip):  # the view-averaged score, the other views clean
        return ((one(clip) + others) / views)[target]

    clip = x[0, v]
    t = clip.shape[1]
    sign = 1.0 if mode == 'delete' else -1.0
    strength = (lambda m: m) if mode == 'delete' else (lambda m: 1 - m)
    with torch.no_grad():
        orig = scores_of(clip)
        if init == 'central':
            assert mode == 'delete'
            full = scores_of(clip[:, :1].expand_as(clip))
            block = torch.ones(t)
            for i in range(1, t // 2):
                block = torch.ones(t)
                block[:i] = 0
                block[t - i:] = 0
                s = scores_of(reference_perturb(clip, block, perturbation))
                if (orig - s) / (orig - full) < 0.9:
                    break
            theta = (block * 2 - 1) * 5.0
        else:
            theta = torch.zeros(t)
    theta.requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(iterations):
        m = torch.sigmoid(theta)
        tv = sum((m[u - 1] - m[u]).abs() ** 3 + (m[u + 1] - m[u]).abs() ** 3
                 for u in range(1, t - 1))
        loss = sign * scores_of(reference_perturb(clip, strength(m),
                                                  perturbation)) + \
            lam1 * m.abs().sum() + lam2 * tv
        theta.grad, = torch.autograd.grad(loss, theta)
        opt.step()
    with torch.no_grad():
        m = torch.sigmoid(theta)
        out = {'original_score': orig}
        for p in ('freeze', 'reverse'):
            out[f'{p}_score'] = scores_of(reference_perturb(clip,
                                                            strength(m), p))
    return m, out


def test_reverse_partners_match_the_run_loop():
    g = torch.Generator().manual_seed(3)
    s = torch.rand(64, 9, generator=g)
    s[s < 0.35] = 0.05  # many runs, of every length
    s[0, 4] = 0.1  # at the threshold: off, as the authors' ``>``
    s[1] = torch.tensor(0.1).float()  # float32(0.1) > 0.1: on (doubles)
    for row in range(s.shape[0]):
        ref = [list(range(9)) for _ in range(2)]  # partner, src
        for run in reverse_runs(s[row].tolist()):
            for u in range(len(run) // 2):
                a, b = run[u], run[-(u + 1)]
                ref[0][a], ref[0][b] = b, a
                ref[1][a] = ref[1][b] = a
        w = reverse_matrix(s[row:row + 1])[0]
        x = torch.arange(9.0)
        sa = s[row][torch.tensor(ref[1])]
        want = torch.where(torch.tensor(ref[0]) != torch.arange(9),
                           (1 - sa) * x + sa * x[torch.tensor(ref[0])], x)
        assert torch.allclose(w @ x, want), row
    # the batch at once equals row by row
    assert torch.equal(reverse_matrix(s), torch.cat(
        [reverse_matrix(s[i:i + 1]) for i in range(s.shape[0])]))


@pytest.mark.parametrize('case', [
    ('planted', 'freeze', 'delete', 'central', 'prob', 15),
    ('tiny', 'reverse', 'delete', 'uniform', 'prob', 4),
    ('tiny', 'freeze', 'preserve', 'uniform', 'logit', 4)])
def test_masks_and_scores_match_a_plain_reference(planted, case):
    """The batched, vectorised loop (clean score reused, the final freeze
    and reverse scores in one forward) gives the masks and scores of a
    plain per-view loop with one forward per score."""
    name, perturbation, mode, init, score, iterations = case
    if name == 'planted':
        model, x = planted
    else:
        model = tm.build(tm.i3d_cfg())
        x = tm.preprocess(model, tm.clip_batch(views=2))['inputs']
    target = 1 if name == 'tiny' else 0
    snap = ModelSnapshot(model)
    exp = TemporalMask(model, perturbation=perturbation, mode=mode,
                       init=init, score=score, iterations=iterations,
                       progress=False).attribute(x, target)
    assert snap.changes() == []
    for v in range(x.shape[1]):
        m, ref = reference_mask(model, x, v, target, perturbation, mode,
                                init, iterations, score)
        assert torch.allclose(exp.extras['temporal_masks'][0, v], m,
                              atol=1e-5), v
        for k, want in ref.items():
            assert float(exp.extras[k][0, v]) == pytest.approx(
                float(want), rel=1e-4, abs=1e-6), (v, k)
