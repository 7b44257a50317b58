"""The benchmark report's goal and reading logic on planted scores (the
benchmark itself is too slow for the test suite)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                            'tools', 'benchmarks'))
from suite.report import goals_section, reading_section  # noqa: E402
from suite.settings import parse_args  # noqa: E402

KEYS = ('pointing', 'pointing_cell', 'energy', 'temporal_grounding',
        'temporal_energy', 'deletion', 'insertion', 'seconds')


def _rows(scores):
    """One row per method: ``{method: (pointing, deletion, insertion)}``."""
    rows = []
    for m, (pt, de, ins) in scores.items():
        r = dict.fromkeys(KEYS, 0.5)
        r.update(method=m, pointing=pt, deletion=de, insertion=ins,
                 seconds=0.1)
        rows.append(r)
    return dict(rows=rows, sanity={
        'gradcam': dict(steps=[dict(spearman=0.9, layers=['cls_head']),
                               dict(spearman=0.1, layers=['backbone'])])})


BASE = {'random map': (0.0, 0.45, 0.47),
        'static random map': (0.1, 0.67, 0.75),
        'centre map': (0.1, 0.5, 0.8)}


def test_goals_compare_with_the_iid_random_map_only():
    results = {
        'i3d': _rows(dict(BASE, gradcam=(0.95, 0.40, 0.90))),
        # beats the static random map, not the i.i.d. one, on deletion
        'transformer': _rows(dict(BASE, gradcam=(0.92, 0.50, 0.90))),
    }
    args = parse_args(['--models', 'i3d', 'transformer'])
    acc = {n: dict(test_top1=1.0) for n in results}
    text = '\n'.join(goals_section(args, results, acc))
    assert ('| i3d: every method beats the random map on pointing, deletion '
            'and insertion | all do | yes |') in text
    assert ('| transformer: every method beats the random map on pointing, '
            'deletion and insertion | not: gradcam | **no** |') in text
    assert 'static random map' not in text  # a baseline, never a method
    reading = '\n'.join(reading_section(results, acc))
    assert 'docs/transformer_cams.md' in reading
    results['transformer'] = _rows(dict(BASE, gradcam=(0.92, 0.40, 0.90)))
    reading = '\n'.join(reading_section(results, acc))
    assert 'docs/transformer_cams.md' not in reading
    assert '| every gradient-based method passes the randomisation test | ' \
        'all pass | yes |' in '\n'.join(goals_section(args, results, acc))


def test_partial_run_arguments_and_fresh_seed_paths():
    from suite.settings import NEW_METHODS, SHIPPED_SEED
    args = parse_args(['--methods', 'new', '--partial', '--data-seed', '7'])
    assert args.methods == list(NEW_METHODS)
    assert args.data_root == 'data/benchmark_synthetic_seed7'
    assert args.work_dir.endswith('seed7') and args.skip_speed
    assert args.out.endswith('partial_seed7.md')
    assert args.fig_prefix == 'benchmark_partial_seed7'
    shipped = parse_args(['--data-seed', str(SHIPPED_SEED)])
    assert shipped.data_root == 'data/benchmark_synthetic'
    assert shipped.fig_prefix == 'benchmark'


def test_partial_report_lists_new_rows_na_and_failures():
    from suite.report import partial_report
    res = _rows(dict(BASE, lrp=(0.95, 0.40, 0.90), loco=(0.0, 0.50, 0.40)))
    res.update(na={'legrad': 'legrad needs attention'},
               failed={'staa': 'RuntimeError: boom'}, sanity={})
    args = parse_args(['--models', 'i3d', '--partial', '--methods', 'lrp',
                       'loco', 'legrad', 'staa'])
    text = partial_report(args, {'i3d': res}, {'i3d': dict(test_top1=1.0)},
                          60.0, 'cpu', 1.0, 1.0, 120.0)
    assert '| lrp | 0.95 |' in text and '| random map | 0.00 |' in text
    assert '| legrad | n/a (legrad needs attention) |' in text
    assert '| staa | failed (RuntimeError: boom) |' in text
    assert 'not: loco' in text  # worse than the random map: named
    assert 'i3d: best pointing game >= 0.9 | lrp 0.95 | yes' in text
