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
