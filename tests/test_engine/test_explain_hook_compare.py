"""ExplainHook with several explainers: the method comparison over a test
set through the real Runner, scored by the registered metrics; time per
sample, agreement between methods, the random-map baseline and the
recommendation derived from the numbers."""
import copy
import json
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch

import explain_data as data
from mmxai.explainers.gradients import Saliency

DEL = dict(type='mmxai.DeletionInsertionAUC', steps=4, cell_size=(2, 8, 8),
           batch_size=5)
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class FailingSaliency(Saliency):
    """Saliency that fails on dataset sample 3 (a planted failure)."""

    def attribute(self, inputs, target='pred', data_samples=None):
        if any(s.metainfo.get('sample_idx') == 3 for s in data_samples or []):
            raise RuntimeError('planted failure on sample 3\nsecond line')
        return super().attribute(inputs, target, data_samples)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('videos'))
    data.make_dataset(root, num=5)
    ckpt = data.save_checkpoint(osp.join(root, 'ckpt.pth'))
    return root, ckpt


def _runner(cfg_path, work_dir, ckpt, **overrides):
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmxai.checkpoint import load_checkpoint
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(overrides)
    runner = Runner.from_cfg(cfg)
    load_checkpoint(runner.model, ckpt)
    return runner


def _hook(runner):
    return next(h for h in runner.hooks if type(h).__name__ == 'ExplainHook')


def _inputs(runner, idx):
    from mmengine.dataset import pseudo_collate
    model = runner.model
    batch = pseudo_collate([runner.test_dataloader.dataset[idx]])
    with torch.no_grad():
        return model.data_preprocessor(batch, False)['inputs']


def test_methods_compared_with_the_registered_metrics(dataset, tmp_path):
    """GradCAM, Saliency, an n/a method and one failing on a sample over 5
    clips: per-method keys, values equal to the metric on the saved maps,
    t-intervals equal to a hand computation, the failure recorded."""
    from scipy.stats import t as student_t

    from mmxai.evaluation import DeletionInsertionAUC, ExplainedBatch
    from mmxai.explainers import build_explainer
    from mmxai.testing.coverage import ModelSnapshot
    root, ckpt = dataset
    hook = dict(type='mmxai.ExplainHook', outputs=('json', 'npz'),
                explainer=[dict(type='GradCAM'), 'saliency',
                           'attention_rollout'],
                metrics=[DEL, dict(type='mmxai.AverageDrop')])
    cfg = data.write_config(str(tmp_path / 'cfg.py'), root, hooks=[hook],
                            meta_keys=('img_shape', 'sample_idx'))
    runner = _runner(cfg, tmp_path / 'wd', ckpt)
    _hook(runner).explainer_cfg.append(dict(type=FailingSaliency))
    runner.model.eval()  # TestLoop.run does this itself
    snap = ModelSnapshot(runner.model)
    metrics = runner.test()
    assert snap.changes() == []
    methods = ('gradcam', 'saliency', 'failing_saliency')
    for m in methods:
        for k in ('deletion_auc', 'insertion_auc', 'average_drop'):
            assert f'mmxai/{m}/{k}' in metrics
    assert 'mmxai/deletion_auc' not in metrics  # no pooled number
    assert 'acc/top1' in metrics
    summary = json.loads((tmp_path / 'wd' / 'compare.json').read_text())
    assert summary['methods'] == list(methods)
    assert list(summary['not_applicable']) == ['attention_rollout']
    assert summary['not_applicable']['attention_rollout']  # the reason
    assert summary['failures'] == [dict(
        index=3, method='failing_saliency',
        error='RuntimeError: planted failure on sample 3')]
    assert summary['samples'] == 5
    out = tmp_path / 'wd' / 'explanations'
    assert sorted(os.listdir(out / 'gradcam')) == [
        f'{i:06d}' for i in range(5)]
    assert '000003' not in os.listdir(out / 'failing_saliency')
    index = json.loads((out / 'index.json').read_text())
    assert index['methods']['failing_saliency']['samples'] == [0, 1, 2, 4]
    # one implementation: the registered metric on each method's saved maps
    model = runner.model
    adapter = build_explainer('saliency', model).adapter
    metric = DeletionInsertionAUC(**{k: v for k, v in DEL.items()
                                     if k != 'type'})
    entry = summary['metrics']['mmxai/deletion_auc']
    for m in methods:
        done = [0, 1, 2, 4] if m == 'failing_saliency' else range(5)
        xs = []
        for i in done:
            with np.load(out / m / f'{i:06d}' / 'maps.npz') as z:
                exp = type('E', (), dict(maps=torch.from_numpy(z['maps']),
                                         targets=torch.from_numpy(
                                             z['targets'])))
            batch = ExplainedBatch([0], [i], _inputs(runner, i), [None],
                                   exp, adapter)
            xs.append(metric.evaluate_batch(batch)[0]['deletion'])
        st = entry['methods'][m]
        assert st['n'] == len(xs)
        np.testing.assert_allclose(
            [st['per_sample'][str(i)] for i in done], xs, atol=1e-5)
        assert math.isclose(st['value'], float(np.mean(xs)), abs_tol=1e-5)
        assert math.isclose(metrics[f'mmxai/{m}/deletion_auc'],
                            float(np.mean(xs)), abs_tol=1e-5)
        # Student's t interval, by hand
        half = student_t.ppf(0.975, len(xs) - 1) * np.std(xs, ddof=1) / \
            math.sqrt(len(xs))
        np.testing.assert_allclose(st['ci95'], [np.mean(xs) - half,
                                                np.mean(xs) + half],
                                   atol=1e-5)
        np.testing.assert_allclose(metrics[f'mmxai/{m}/deletion_auc_ci95'],
                                   st['ci95'], atol=1e-5)
    # methods ranked by each metric in its direction
    vals = [entry['methods'][m]['value'] for m in entry['ranking']]
    assert entry['better'] == 'lower' and vals == sorted(vals)
    ins = summary['metrics']['mmxai/insertion_auc']
    vals = [ins['methods'][m]['value'] for m in ins['ranking']]
    assert vals == sorted(vals, reverse=True)
    md = (tmp_path / 'wd' / 'compare.md').read_text()
    assert '## mmxai/deletion_auc (lower is better)' in md
    assert 'attention_rollout' in md and 'planted failure' in md
    _check_timing(summary, methods)
    _check_agreement(summary, out, methods)
    _check_random(summary, runner, out, adapter)
    # the recommendation: derived from this summary's numbers
    from mmxai.evaluation.recommendation import recommend_hook
    assert summary['recommendation'] == recommend_hook(summary)
    assert summary['recommendation'][0].startswith('most faithful here: ')
    assert summary['recommendation'][0].split()[3] in methods
    assert '## Recommendation' in md and 'random (baseline)' in md
    assert '## Agreement' in md and '## Time and memory' in md
    assert (tmp_path / 'wd' / 'agreement.png').stat().st_size > 0
    # the evaluator is left as configured
    assert [type(m).__name__ for m in runner.test_loop.evaluator.metrics] \
        == ['AccMetric']


def _check_timing(summary, methods):
    """Per method: positive seconds per sample, total = the sum of the
    per-sample shares, one share per explained sample."""
    timing = summary['timing']
    assert list(timing) == list(methods)
    for m in methods:
        t = timing[m]
        assert t['samples'] == (4 if m == 'failing_saliency' else 5)
        assert sorted(t['per_sample']) == (
            ['0', '1', '2', '4'] if m == 'failing_saliency'
            else ['0', '1', '2', '3', '4'])
        assert all(v > 0 for v in t['per_sample'].values())
        assert t['seconds_per_sample'] > 0
        assert math.isclose(t['seconds_total'],
                            sum(t['per_sample'].values()), rel_tol=1e-4)
        assert math.isclose(t['seconds_per_sample'] * t['samples'],
                            t['seconds_total'], rel_tol=1e-9)
        assert t['peak_mib'] is None or t['peak_mib'] >= 0


def _spearman(a, b):
    """By hand: Spearman = Pearson of the ranks (average ranks for ties);
    a constant map against another: 0 (two constant maps: 1)."""
    from scipy.stats import rankdata
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.ptp(a) == np.ptp(b) == 0 else 0.0
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def _check_agreement(summary, out, methods):
    """Agreement of a method with itself is 1, the matrix is symmetric and
    equals the mean over the common samples of Spearman on the saved
    maps."""
    ag = summary['agreement']
    assert ag['methods'] == list(methods)
    mat = np.array(ag['matrix'], float)
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat, mat.T)

    def done(m):
        return [0, 1, 2, 4] if m == 'failing_saliency' else range(5)

    def maps(m, i):
        with np.load(out / m / f'{i:06d}' / 'maps.npz') as z:
            return z['maps'][0]
    for a in range(len(methods)):
        for b in range(a + 1, len(methods)):
            common = [i for i in done(methods[a]) if i in done(methods[b])]
            rho = np.mean([_spearman(maps(methods[a], i), maps(methods[b], i))
                           for i in common])
            assert abs(mat[a, b] - rho) < 2e-4, (methods[a], methods[b])
            assert ag['samples'][a][b] == len(common)


def _check_random(summary, runner, out, adapter):
    """The random baseline: the registered metric on the seeded uniform map
    made by hand (shape and target of the sample's first map), beside the
    methods, not ranked."""
    from mmxai.evaluation import AverageDrop, DeletionInsertionAUC
    from mmxai.evaluation import ExplainedBatch
    assert summary['random_baseline']['seed'] == 0
    dmetric = DeletionInsertionAUC(**{k: v for k, v in DEL.items()
                                      if k != 'type'})
    ametric = AverageDrop()
    dels, ins, drops = [], [], []
    for i in range(5):
        with np.load(out / 'gradcam' / f'{i:06d}' / 'maps.npz') as z:
            shape, targets = z['maps'].shape, torch.from_numpy(z['targets'])
        rnd = torch.rand(shape, generator=torch.Generator().manual_seed(i))
        exp = type('E', (), dict(maps=rnd, targets=targets))
        batch = ExplainedBatch([0], [i], _inputs(runner, i), [None], exp,
                               adapter)
        row = dmetric.evaluate_batch(batch)[0]
        dels.append(row['deletion'])
        ins.append(row['insertion'])
        drops.append(ametric.evaluate_batch(batch)[0]['drop'])
    for key, xs in (('deletion_auc', dels), ('insertion_auc', ins),
                    ('average_drop', drops)):
        entry = summary['metrics'][f'mmxai/{key}']
        r = entry['random']
        np.testing.assert_allclose([r['per_sample'][str(i)]
                                    for i in range(5)], xs, atol=1e-4)
        assert math.isclose(r['value'], float(np.mean(xs)), abs_tol=1e-4)
        assert r['n'] == 5 and len(r['ci95']) == 2
        assert 'random' not in entry['ranking']
        assert 'random' not in entry['methods']
    faith = summary['metrics']['mmxai/faithfulness']
    assert faith['better'] == 'higher'
    assert math.isclose(faith['random']['value'],
                        float(np.mean(np.subtract(ins, dels))), abs_tol=1e-4)
    d = summary['metrics']['mmxai/deletion_auc']['methods']['gradcam']
    i = summary['metrics']['mmxai/insertion_auc']['methods']['gradcam']
    assert math.isclose(faith['methods']['gradcam']['value'],
                        i['value'] - d['value'], abs_tol=1e-6)


def _hook_summary(values, ci_half=0.01, seconds=None, sanity=None, n=20):
    """A hand-made compare.json content: per method (deletion, insertion)
    AUCs with intervals of half-width ``ci_half``; random 0.6 / 0.7."""
    def entry(better, key, rnd):
        return dict(better=better, random=dict(value=rnd), methods={
            m: dict(value=v[key], ci95=[v[key] - ci_half, v[key] + ci_half],
                    n=n) for m, v in values.items()})
    faith = {m: dict(faithfulness=v['insertion'] - v['deletion'])
             for m, v in values.items()}
    metrics = {
        'mmxai/deletion_auc': entry('lower', 'deletion', 0.6),
        'mmxai/insertion_auc': entry('higher', 'insertion', 0.7),
        'mmxai/faithfulness': dict(better='higher', random=dict(value=0.1),
                                   methods={m: dict(
                                       value=f['faithfulness'],
                                       ci95=[f['faithfulness'] - ci_half,
                                             f['faithfulness'] + ci_half])
                                       for m, f in faith.items()})}
    if sanity:
        metrics['mmxai/randomization_passed'] = dict(
            better='higher', methods={m: dict(value=float(p))
                                      for m, (p, _) in sanity.items()})
        metrics['mmxai/randomization_spearman'] = dict(
            better='lower', methods={m: dict(value=r)
                                     for m, (_, r) in sanity.items()})
    names = list(values)
    return dict(methods=names, samples=n, metrics=metrics,
                timing={m: dict(seconds_per_sample=t)
                        for m, t in (seconds or {}).items()},
                agreement=dict(methods=names, matrix=np.eye(
                    len(names)).tolist()),
                sanity=dict(cascade=['cls_head'], threshold=0.5))


def test_hook_recommendation_follows_the_numbers():
    """The pure rule on the hook's summary: other numbers, other answer;
    overlapping intervals are said; random and sanity are read."""
    from mmxai.evaluation.recommendation import recommend_hook
    vals = dict(a=dict(deletion=0.2, insertion=0.9),
                b=dict(deletion=0.3, insertion=0.8),
                c=dict(deletion=0.7, insertion=0.6))
    s = _hook_summary(vals, seconds=dict(a=2.0, b=0.5, c=0.1))
    lines = recommend_hook(s)
    assert lines[0].startswith('most faithful here: a (insertion - '
                               'deletion 0.700 [0.690, 0.710]')
    assert 'next: b' in lines[0]
    assert any(x.startswith('fastest that beats a random map on both curves'
                            ' and passes the sanity check: b (0.50 s per '
                            'sample') for x in lines)
    assert any(x == 'do not beat a random map on both curves here: c'
               for x in lines)
    assert lines[-1].startswith('from 20 sample(s)')
    # swap a and b: b is recommended, a is the fastest that beats random
    sw = copy.deepcopy(vals)
    sw['a'], sw['b'] = vals['b'], vals['a']
    lines = recommend_hook(_hook_summary(sw, seconds=dict(a=0.5, b=2.0,
                                                          c=0.1)))
    assert lines[0].startswith('most faithful here: b ')
    assert any(': a (0.50 s per sample' in x for x in lines)
    # wide intervals: the best is not separated from the next
    lines = recommend_hook(_hook_summary(vals, ci_half=0.15))
    assert 'not separated from b at 20 samples' in lines[0]
    # a failed sanity check moves the recommendation to the next method
    lines = recommend_hook(_hook_summary(vals, sanity=dict(
        a=(0, 0.9), b=(1, 0.1), c=(1, 0.0))))
    assert lines[0].startswith('most faithful here: b ')
    assert any(x.startswith('a scores higher on the curves') for x in lines)
    assert any(x.startswith('fail the sanity check') and 'a (0.90)' in x
               for x in lines)
    assert recommend_hook(dict(methods=[], metrics={}, samples=0))[
        0].startswith('no method produced a map')


def test_shipped_compare_config_beside_any_config(dataset, tmp_path):
    """configs/explain/compare_methods_hook.py inherits beside a config with
    its own test_evaluator; a single-explainer hook still writes no
    comparison and reports the pooled keys."""
    root, ckpt = dataset
    own = data.write_config(str(tmp_path / 'own.py'), root)
    child = tmp_path / 'child.py'
    shipped = osp.join(ROOT, 'configs', 'explain', 'compare_methods_hook.py')
    child.write_text(f'_base_ = [{own!r}, {shipped!r}]\n')
    runner = _runner(str(child), tmp_path / 'wd', ckpt,
                     **{'custom_hooks.0.max_samples': 2})
    hook = _hook(runner)
    assert [c['type'] for c in hook.explainer_cfg] == \
        ['GradCAM', 'Saliency', 'RISE']
    hook.explainer_cfg[2].update(num_masks=4)  # keep the test fast
    hook.metrics_cfg[0].update(steps=2, cell_size=(2, 8, 8))
    metrics = runner.test()
    assert 'mmxai/rise/deletion_auc' in metrics
    assert (tmp_path / 'wd' / 'compare.md').is_file()
    # one explainer: as before
    single = data.write_config(str(tmp_path / 'one.py'), root, hooks=[dict(
        type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
        outputs=('npz', ), max_samples=2, metrics=[DEL])])
    runner = _runner(single, tmp_path / 'wd1', ckpt)
    metrics = runner.test()
    assert 'mmxai/deletion_auc' in metrics
    assert not any(k.startswith('mmxai/gradcam') for k in metrics)
    assert not (tmp_path / 'wd1' / 'compare.json').exists()
    assert not (tmp_path / 'wd1' / 'agreement.png').exists()
    hook = _hook(runner)
    assert hook._seconds == {} and hook._agreement == {}
    assert hook._random_rows == {}
    assert sorted(d for d in os.listdir(tmp_path / 'wd1' / 'explanations')
                  if d.isdigit()) == ['000000', '000001']


def test_per_sample_values_merged_across_processes():
    """What every process gathered, as one: a sample seen by two processes
    (a distributed sampler's padding) counts once."""
    from mmxai.engine.explain_hook import _merge
    parts = [{'gradcam': {0: 1.0, 2: 3.0}}, {'gradcam': {1: 2.0, 0: 9.0},
                                             'rise': {1: 5.0}}]
    assert _merge(parts, depth=2) == {'gradcam': {0: 1.0, 2: 3.0, 1: 2.0},
                                      'rise': {1: 5.0}}
    assert _merge([{0: 'a'}, {0: 'b', 3: 'c'}], depth=1) == {0: 'a', 3: 'c'}
    from mmxai.outputs.hook_comparison import timing_summary
    t = timing_summary(_merge(parts, depth=2))
    assert t['gradcam']['samples'] == 3
    assert math.isclose(t['gradcam']['seconds_total'], 6.0)
    assert math.isclose(t['gradcam']['seconds_per_sample'], 2.0)


def test_t_interval_by_hand():
    from mmxai.evaluation.method_stats import t_interval
    # [1, 2, 3, 4]: mean 2.5, s = 1.2910, t(0.975, 3) = 3.1824
    lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert math.isclose(lo, 2.5 - half, rel_tol=1e-9)
    assert math.isclose(hi, 2.5 + half, rel_tol=1e-9)
    assert t_interval([1.0]) is None
