"""ExplainHook with several explainers: the method comparison over a test
set through the real Runner, scored by the registered metrics."""
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
    # the evaluator is left as configured
    assert [type(m).__name__ for m in runner.test_loop.evaluator.metrics] \
        == ['AccMetric']


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
    assert sorted(d for d in os.listdir(tmp_path / 'wd1' / 'explanations')
                  if d.isdigit()) == ['000000', '000001']


def test_t_interval_by_hand():
    from mmxai.evaluation.method_stats import t_interval
    # [1, 2, 3, 4]: mean 2.5, s = 1.2910, t(0.975, 3) = 3.1824
    lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert math.isclose(lo, 2.5 - half, rel_tol=1e-9)
    assert math.isclose(hi, 2.5 + half, rel_tol=1e-9)
    assert t_interval([1.0]) is None
