"""The procedure benchmark's scoring functions on planted maps, and (sweep)
the whole script in its smallest setting."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))
import bench_surgical as bs  # noqa: E402


def _masks(t=8, size=64, seed=0):
    """A 9x9 instrument at a random spot of every frame."""
    rng = np.random.default_rng(seed)
    m = np.zeros((t, size, size), bool)
    for i in range(t):
        y, x = rng.integers(0, size - 9, 2)
        m[i, y:y + 9, x:x + 9] = True
    return m


def test_map_inside_the_mask_scores_one():
    masks = _masks()
    s = bs.score_spatial(masks.astype(np.float32), masks)
    assert s == dict(pointing=1.0, pointing_0=1.0, frame_pointing=1.0,
                     energy=1.0)
    # a peak inside, weak noise elsewhere: pointing still 1
    noisy = 0.1 * np.random.default_rng(1).random(masks.shape) + masks
    assert bs.score_spatial(noisy, masks)['pointing_0'] == 1.0


def test_map_outside_the_mask_scores_zero():
    masks = _masks()
    away = np.zeros(masks.shape, np.float32)
    away[:, 30:34, 30:34] = 1
    masks[:, 20:40, 20:40] = False
    s = bs.score_spatial(away, masks, tolerance=0.0)
    assert s['pointing'] == s['pointing_0'] == s['frame_pointing'] == 0
    assert s['energy'] == 0


def test_random_map_scores_the_area_share():
    masks = _masks(t=8)
    share = masks.mean()
    rows = [bs.score_spatial(bs.baseline_maps(masks.shape, k)['random'],
                             masks, tolerance=0.0) for k in range(150)]
    energy = np.mean([r['energy'] for r in rows])
    point = np.mean([r['pointing_0'] for r in rows])
    assert abs(energy - share) < 0.1 * share
    # a Bernoulli(share) mean over 150 trials: within ~4 standard errors
    assert abs(point - share) < 4 * np.sqrt(share * (1 - share) / 150) + 1e-3


def test_window_evidence_keeps_the_target_phase_frames():
    masks = _masks(t=10)
    phase = np.array([0] * 5 + [1] * 5)
    m, fr = bs.window_evidence(masks, phase, [3, 4, 5, 6], 1)
    assert fr.tolist() == [False, False, True, True]
    assert not m[:2].any() and (m[2:] == masks[5:7]).all()


def test_temporal_scores():
    ev = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)
    s = bs.score_temporal(ev * 2.0 - 1, ev)
    assert s == dict(peak=1.0, share=1.0, chance=5 / 8)
    s = bs.score_temporal(np.arange(8)[::-1], ev)  # peak at frame 0
    assert s['peak'] == 0.0
    rng = np.random.default_rng(0)
    peaks = [bs.score_temporal(rng.random(8), ev)['peak']
             for _ in range(400)]
    assert abs(np.mean(peaks) - 5 / 8) < 0.1


def test_centre_baseline_misses_the_ring():
    """The instruments work on a ring 0.3 x size from the centre: the
    centre map's maximum is never on them."""
    masks = np.zeros((4, 64, 64), bool)
    masks[:, 5:14, 28:37] = True
    s = bs.score_spatial(bs.baseline_maps(masks.shape, 0)['centre'], masks)
    assert s['pointing'] == 0


def test_max_location_names_where_the_peak_is():
    pm = np.zeros((3, 64, 64), bool)
    dm = np.zeros((3, 64, 64), bool)
    pm[:, 5:14, 28:37] = True                  # the phase instrument
    dm[:, 40:49, 40:49] = True                 # a distractor
    ev = np.array([False, True, True])
    maps = np.zeros((3, 64, 64), np.float32)
    maps[1, 9, 30] = 1
    assert bs.max_location(maps, pm, dm, ev) == 'instrument'
    maps[2, 44, 44] = 2
    assert bs.max_location(maps, pm, dm, ev) == 'distractor'
    maps[2, 25, 10] = 3                        # far from both masks
    assert bs.max_location(maps, pm, dm, ev) == 'elsewhere'
    maps[0, 9, 30] = 4                         # a frame of the other phase
    assert bs.max_location(maps, pm, dm, ev) == 'other phase frame'
    # within the tolerance counts, beyond it does not
    near = np.zeros_like(maps)
    near[1, 9, 39] = 1                         # 3 px right of the mask
    assert bs.max_location(near, pm, dm, ev, tolerance=4.3) == 'instrument'
    assert bs.max_location(near, pm, dm, ev, tolerance=2.0) == 'elsewhere'


def test_max_location_previous_instrument_place():
    pm = np.zeros((2, 64, 64), bool)
    dm = np.zeros((2, 64, 64), bool)
    pm[0, 40:49, 5:14] = True                  # the previous instrument
    pm[1, 5:14, 28:37] = True                  # the target's instrument
    ev = np.array([False, True])
    maps = np.zeros((2, 64, 64), np.float32)
    maps[1, 44, 9] = 1                         # where the previous one was
    prev = pm[~ev].any(0)
    assert bs.max_location(maps, pm, dm, ev, prev_place=prev) == \
        'previous instrument place'
    assert bs.max_location(maps, pm, dm, ev) == 'elsewhere'


def test_sign_split_by_hand():
    ev = np.array([False, False, True, True])
    pos = np.array([1.0, 0.0, 2.0, 1.0])
    neg = np.array([2.0, 1.0, 0.0, 1.0])
    s = bs.sign_split(pos, neg, ev)
    assert s['pos_prev'] == 1 / 4 and s['neg_prev'] == 3 / 4
    assert s['neg_of_prev'] == 3 / 4
    assert np.isnan(bs.sign_split(pos, 0 * neg, ev)['neg_prev'])


def test_positive_part_keeps_the_signed_maximum():
    import torch
    from types import SimpleNamespace
    rng = np.random.default_rng(0)
    raw = torch.as_tensor(rng.normal(size=(2, 1, 3, 8, 8)),
                          dtype=torch.float32)

    class Fake:
        def attribute(self, inputs, target='pred', data_samples=None):
            return SimpleNamespace(raw_maps=raw.clone(), maps=None,
                                   settings={'normalize': 'joint'})
    f = Fake()
    pp = bs.PositivePart(f)
    exp = f.attribute(None)                    # the wrapped method
    assert (exp.raw_maps >= 0).all() and pp.signed == 2
    for b in range(2):
        assert exp.maps[b].flatten().argmax() == raw[b].flatten().argmax()
        pos, neg = pp.records[b]
        np.testing.assert_allclose(pos, raw[b, 0].clamp_min(0).sum((1, 2)),
                                   rtol=1e-6)
        np.testing.assert_allclose(neg, (-raw[b, 0]).clamp_min(0).sum((1, 2)),
                                   rtol=1e-6)
    assert float(exp.maps.max()) == 1.0 and float(exp.maps.min()) == 0.0


def test_fade_region_only_touches_the_mask_in_the_chosen_frames():
    import torch
    x = torch.ones(1, 3, 3, 8, 8)
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2:4, 2:4] = True
    out = bs.fade_region(x, np.array([False, True, False]), masks, grow=0)
    assert out[0, 1][:, 2:4, 2:4].abs().sum() == 0
    assert out.sum() == x.sum() - 3 * 4 and x.min() == 1  # input untouched
    grown = bs.fade_region(x, np.array([True, False, False]), masks, grow=1)
    # a 2x2 square grown 1 px by the cross element: 12 px
    assert (grown[0, 0, 0] == 0).sum() == 12


def test_method_spec_budgets_and_layers():
    assert bs.method_spec('gradcam:backbone.layer1') == (
        'gradcam', dict(target_layers=['backbone.layer1']))
    assert bs.method_spec('captum:InputXGradient') == (
        'captum', dict(algorithm='InputXGradient'))
    assert bs.method_spec('integrated_gradients') == (
        'integrated_gradients', dict(n_steps=8))
    assert bs.method_spec('saliency') == ('saliency', {})
    from mmxai.explainers.builder import method_names
    names = set(method_names())
    for m in bs.METHODS + bs.MORE_METHODS:
        assert bs.method_spec(m)[0] in names, m


def test_goals_name_the_maps_that_lose_to_random():
    e = dict(spatial={'a': dict(pointing=0.9), 'b': dict(pointing=0.01),
                      'random': dict(pointing=0.05)},
             di={'a': dict(deletion=0.3, insertion=0.8),
                 'b': dict(deletion=0.7, insertion=0.9),
                 'random': dict(deletion=0.6, insertion=0.7)})
    assert bs.beats_random(e, 'a') == dict(pointing=True, deletion=True,
                                           insertion=True)
    assert bs.beats_random(e, 'b') == dict(pointing=False, deletion=False,
                                           insertion=True)
    res = dict(settings=dict(seed=0, fresh_seed=1, methods=['a', 'b']),
               explain=dict(test=e, fresh=e))
    row = bs.goal_lines(res)[4]
    assert row == '| 0 (held out) | a 0.900 | b | b | none |'


def test_split_keeps_the_held_out_numbers():
    assert bs.split_ids(8, 4) == (list(range(1, 9)), [9, 10, 11, 12])
    tr, te = bs.split_ids(24, 4)
    assert te == [9, 10, 11, 12] and not set(tr) & set(te)
    assert tr[:8] == list(range(1, 9)) and tr[8:] == list(range(13, 29))
    assert bs.ranges(tr) == '1-8, 13-28'


@pytest.mark.sweep  # the whole benchmark at its smallest: ~2 min, 2 cores
def test_benchmark_end_to_end(tmp_path):
    doc = tmp_path / 'bench.md'
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'benchmarks',
                                  'bench_surgical.py'), '--smoke',
         '--work-dir', str(tmp_path / 'work'), '--doc', str(doc)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    res = json.loads((tmp_path / 'work' / 'results.json').read_text())
    assert 0 <= res['phase']['test']['phase/accuracy'] <= 1
    assert 'phase/relaxed_jaccard' in res['phase']['fresh']
    e = res['explain']['test']
    assert e['windows'] > 0
    # one epoch on two procedures: maybe no window is predicted right, and
    # only those are scored
    for key in ('gradcam', 'random', 'centre'):
        if e['windows_correct']:
            assert 0 <= e['spatial'][key]['energy'] <= 1
    assert osp.isfile(res['checkpoint'])
    assert (tmp_path / 'figures' / 'surgical_benchmark.png').is_file()
    assert 'pointing' in doc.read_text()
