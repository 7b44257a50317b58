"""The agreement measures of tools/benchmarks/bench_compare_agreement.py
(pure functions; the runs themselves are too slow for the suite)."""
import math
import os.path as osp
import random
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'tools', 'benchmarks'))
import bench_compare_agreement as bca  # noqa: E402


def test_kendall_identical_reversed_and_hand_case():
    x = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert bca.kendall_tau_b(x, x) == pytest.approx(1.0)
    assert bca.kendall_tau_b(x, [-v for v in x]) == pytest.approx(-1.0)
    # one swapped adjacent pair of 4: C = 5, D = 1 -> (5 - 1) / 6
    assert bca.kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == \
        pytest.approx(4 / 6)
    # ties in one list: tau-b = (C - D) / sqrt((n0 - n1) n0); n0 = 3, n1 = 1
    assert bca.kendall_tau_b([1, 1, 2], [1, 2, 3]) == \
        pytest.approx(2 / (2 * 3)**0.5)
    assert math.isnan(bca.kendall_tau_b([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        bca.kendall_tau_b([1, 2], [1, 2, 3])


def test_spearman_identical_reversed_and_ties():
    x = [3.0, 1.0, 2.0, 5.0]
    assert bca.spearman(x, x) == pytest.approx(1.0)
    assert bca.spearman(x, [-v for v in x]) == pytest.approx(-1.0)
    assert bca.average_ranks([2, 1, 2, 3]) == [2.5, 1.0, 2.5, 4.0]


def test_against_scipy_with_ties():
    stats = pytest.importorskip('scipy.stats')
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(4, 12)
        x = [rng.choice([0.0, 0.25, 0.5, 0.75]) for _ in range(n)]
        y = [rng.random() if rng.random() < 0.7 else 0.5 for _ in range(n)]
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        assert bca.kendall_tau_b(x, y) == pytest.approx(
            stats.kendalltau(x, y).statistic, abs=1e-12)
        assert bca.spearman(x, y) == pytest.approx(
            stats.spearmanr(x, y).statistic, abs=1e-12)


def test_top_k_keeps_ties_and_set_agreement():
    s = dict(a=0.9, b=0.8, c=0.5, d=0.5, e=0.1)
    assert bca.top_k(s, 3) == ['a', 'b', 'c', 'd']
    assert bca.top_k(dict(a=1, b=2), 3) == ['b', 'a']
    ag = bca.set_agreement(['a', 'b'], ['b', 'c'], ['a', 'b', 'c', 'd'])
    assert ag['both'] == ['b'] and ag['only_a'] == ['a'] and \
        ag['only_b'] == ['c'] and ag['neither'] == ['d']
    assert (ag['agree'], ag['of'], ag['equal']) == (2, 4, False)


def test_paired_separates():
    assert bca.paired_separates([1.0, 1.1, 0.9, 1.05], [0.0, 0.1, 0.0, 0.1])
    assert not bca.paired_separates([1.0, 0.0, 1.0, 0.0],
                                    [0.0, 1.0, 0.0, 1.0])
    assert not bca.paired_separates([1.0], [0.0])


def _bench(faith, point):
    return {m: dict(deletion=0.5 - f / 2, insertion=0.5 + f / 2,
                    pointing=point[m], pointing_cell=point[m])
            for m, f in faith.items()}


def test_agreement_planted_rankings():
    faith = dict(a=0.6, b=0.4, c=0.2, d=0.05)
    point = dict(a=0.1, b=0.3, c=0.5, d=0.9)  # the reverse order
    bench = _bench(faith, point)
    bench['random map'] = dict(deletion=0.45, insertion=0.55, pointing=0.2,
                               pointing_cell=0.2)
    comp = {m: dict(faithfulness=f, beats_random=f > 0.1,
                    sanity_passed=m != 'b') for m, f in faith.items()}
    comp['_best'] = 'a'
    out = bca.agreement(comp, bench, {'x': ['b']})
    assert out['ins-del']['tau'] == pytest.approx(1.0)
    assert out['-deletion']['tau'] == pytest.approx(1.0)
    assert out['pointing']['tau'] == pytest.approx(-1.0)
    assert out['best in top3 ins-del'] and not out['best in top3 pointing']
    # d does not beat random on the curves; a (pointing 0.1) fails pointing
    assert out['random (del+ins)']['equal']
    assert out['random (bench criterion)']['only_b'] == ['a']
    assert out['sanity x']['equal'] and out['sanity x']['both'] == ['b']


def test_parse_shipped_tables(tmp_path):
    md = tmp_path / 'b.md'
    md.write_text('\n'.join([
        '## Localisation and faithfulness', '',
        '### I3D (tiny ResNet3d-18)', '',
        '| method | pointing | pointing (cell) | energy | TG | t-energy | '
        'deletion | insertion | s/clip |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
        '| gradcam | 0.33 | 0.50 | 0.022 | 0.92 | 0.69 | 0.503 | 0.938 | '
        '0.02 |',
        '| random map | 0.00 | 0.00 | 0.010 | 0.67 | 0.51 | 0.657 | 0.616 '
        '| - |',
        '| lrp | n/a (reason) | | | | | | | |', '',
        '## Sanity check: model parameter randomisation', '',
        '| model | method | gradient-based | after head | after cascade | '
        'per step | passes |',
        '|---|---|---|---:|---:|---|---|',
        '| i3d | saliency | yes | 0.87 | 0.25 | 0.87 0.61 0.25 | yes |',
        '', '## Issue 17/18', '',
        '### I3D (tiny ResNet3d-18)', '',
        '| fem | 0.5 | 0.5 | 0.1 | 0.1 | 0.1 | 0.1 | 0.1 | 0.1 |']))
    tables, sanity = bca.parse_shipped(str(md))
    assert set(tables) == {'i3d'}
    assert set(tables['i3d']) == {'gradcam', 'random map'}
    assert tables['i3d']['gradcam']['deletion'] == pytest.approx(0.503)
    assert sanity == {'i3d': {'saliency': dict(passes=True,
                                               steps=[0.87, 0.61, 0.25])}}
