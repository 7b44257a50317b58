"""ExplainHook through MMEngine's Runner and MMAction2's own tools/test.py."""
import copy
import json
import os
import os.path as osp
import re
import subprocess

import numpy as np
import pytest
import torch

import explain_data as data
from mmxai.errors import ConfigError

HOOK = dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
            outputs=('json', 'npz', 'video'))


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('videos'))
    data.make_dataset(root, num=5)
    ckpt = data.save_checkpoint(osp.join(root, 'ckpt.pth'))
    return root, ckpt


def _metrics(stdout: str) -> dict:
    line = [ln for ln in stdout.splitlines() if 'Epoch(test)' in ln
            and 'acc/top1' in ln][-1]
    return {k: float(v) for k, v in re.findall(r'(\S+/\S+): ([-\d.]+)', line)}


def test_toolbox_test_py_with_hook_keeps_metrics(dataset, tmp_path):
    """tools/test.py unchanged: same accuracy with and without the hook,
    explanations beside it; --cfg-options reaches the hook."""
    root, ckpt = dataset
    plain = data.write_config(str(tmp_path / 'plain.py'), root)
    evaluator = [dict(type='AccMetric'),
                 dict(type='mmxai.DeletionInsertionAUC', steps=4,
                      cell_size=(2, 8, 8), batch_size=5),
                 dict(type='mmxai.ModelRandomization', max_samples=2)]
    hooked = data.write_config(str(tmp_path / 'hooked.py'), root,
                               hooks=[HOOK], evaluator=evaluator,
                               imports=['mmxai'])
    env = dict(os.environ, OMP_NUM_THREADS='1')
    logs = [open(tmp_path / f'log{i}.txt', 'w+') for i in range(2)]
    runs = [(plain, 'wd_plain', []),
            (hooked, 'wd_hook',
             ['--cfg-options', 'custom_hooks.0.max_samples=3'])]
    procs = [subprocess.Popen(
        [data.PYTHON, data.test_script(), cfg, ckpt, '--work-dir',
         str(tmp_path / name)] + extra, stdout=log,
        stderr=subprocess.STDOUT, text=True, env=env)
        for (cfg, name, extra), log in zip(runs, logs)]
    outs = []
    for p, log in zip(procs, logs):
        p.wait(timeout=400)
        log.seek(0)
        outs.append(log.read())
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    a, b = _metrics(outs[0]), _metrics(outs[1])
    for key in ('acc/top1', 'acc/top5', 'acc/mean1'):
        assert a[key] == b[key]
    assert 0 <= b['mmxai/deletion_auc'] <= 1
    assert 0 <= b['mmxai/insertion_auc'] <= 1
    # the sanity check of the hook's Grad-CAM, on the test clips
    assert -1 <= b['mmxai/randomization_spearman'] < 0.5
    assert b['mmxai/randomization_passed'] == 1.0
    out_dir = tmp_path / 'wd_hook' / 'explanations'
    done = sorted(d for d in os.listdir(out_dir) if d.isdigit())
    assert done == ['000000', '000001', '000002']  # max_samples=3
    rec = json.loads((out_dir / '000001' / 'explanation.json').read_text())
    assert rec['ranks'][0]['method'] == 'gradcam'
    assert rec['filename'].endswith('clip01.mp4')
    assert rec['labels'][0] == 'GT: 1'
    with np.load(out_dir / '000001' / 'maps.npz') as z:
        assert z['maps'].shape == (1, 1, 8, 32, 32)
        assert 0 <= z['maps'].min() and z['maps'].max() <= 1
    assert (out_dir / '000001' / 'view0.mp4').stat().st_size > 0
    index = json.loads((out_dir / 'index.json').read_text())
    assert index['samples'] == [0, 1, 2]


def _runner(cfg_path, work_dir, **overrides):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(overrides)
    return Runner.from_cfg(cfg)


def _load(runner, ckpt):
    from mmxai.checkpoint import load_checkpoint
    load_checkpoint(runner.model, ckpt)


def test_hook_restores_model_and_matches_direct_explainer(dataset, tmp_path):
    """In-process Runner: the model is unchanged after the test, the hook's
    maps equal the explainer's on the same clip, top-k and views work."""
    from mmxai.explainers import build_explainer
    root, ckpt = dataset
    hook = dict(HOOK, topk=2, indices=[1, 3], views=[0],
                outputs=('json', 'npz', 'montage', 'plot', 'gif'),
                visualizer=dict(type='mmxai.ExplanationVisualizer',
                                vis_backends=[dict(type='LocalVisBackend')]),
                out_type='gif')
    cfg = data.write_config(str(tmp_path / 'cfg.py'), root, hooks=[hook],
                            meta_keys=('img_shape', 'img_key', 'video_id',
                                       'timestamp', 'sample_idx'))
    runner = _runner(cfg, tmp_path / 'wd')
    _load(runner, ckpt)
    model = runner.model
    model.eval()  # TestLoop.run does this itself
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                for m in model.modules())
    runner.test()
    assert all(torch.equal(before[k], v) for k, v in
               model.state_dict().items())
    assert flags == [m.training for m in model.modules()]
    assert hooks == sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                        for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert model.cls_head.average_clips == 'prob'
    out = tmp_path / 'wd' / 'explanations'
    assert sorted(d for d in os.listdir(out) if d.isdigit()) == \
        ['000001', '000003']
    files = set(os.listdir(out / '000003'))
    assert {'maps.npz', 'maps_top2.npz', 'view0_montage.png',
            'view0_temporal.png', 'view0.gif', 'view0_top2.gif',
            'explanation.json'} <= files
    rec = json.loads((out / '000003' / 'explanation.json').read_text())
    assert len(rec['ranks']) == 2
    assert rec['ranks'][0]['target']['class'] != \
        rec['ranks'][1]['target']['class']
    # backend output (LocalVisBackend, GIF written without moviepy)
    assert (out / 'vis_data' / '000003_view0.gif').is_file()
    # same maps as the explainer on the same pipeline output
    from mmengine.dataset import pseudo_collate
    dataset3 = runner.test_dataloader.dataset
    exp = build_explainer('gradcam', model).explain(
        pseudo_collate([dataset3[3]]))
    with np.load(out / '000003' / 'maps.npz') as z:
        np.testing.assert_allclose(z['maps'], exp.maps.numpy(), atol=1e-5)
        assert int(z['targets'][0]) == int(exp.targets[0])


def test_metric_without_hook_is_a_config_error(dataset, tmp_path):
    root, ckpt = dataset
    cfg = data.write_config(str(tmp_path / 'cfg.py'), root, evaluator=[
        dict(type='mmxai.AverageDrop')])
    runner = _runner(cfg, tmp_path / 'wd')
    with pytest.raises(ConfigError, match='ExplainHook'):
        runner.test()


def test_hook_rejects_bad_options():
    from mmxai.engine import ExplainHook
    with pytest.raises(ConfigError, match='unknown output'):
        ExplainHook(outputs=('npz', 'movie'))
    with pytest.raises(ConfigError):
        ExplainHook(interval=0)
    hook = ExplainHook(interval=2, max_samples=2)
    assert [i for i in range(10) if hook.selected(i)] == [0, 2]
    assert ExplainHook(indices=[5]).selected(5)


@pytest.mark.parametrize('base,keys', [
    ('deletion_insertion.py', ('mmxai/deletion_auc', 'mmxai/average_drop')),
    ('sanity_check.py', ('mmxai/randomization_spearman',
                         'mmxai/randomization_passed')),
])
def test_explain_bases_inherit_beside_any_config(dataset, tmp_path, base,
                                                 keys):
    """configs/_base_/explain/*.py next to a config that has its own
    test_evaluator and custom_imports (MMEngine refuses duplicate keys among
    bases): the hook adds its metrics for the run, then removes them."""
    root, ckpt = dataset
    own = data.write_config(str(tmp_path / 'own.py'), root)
    shipped = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                       'configs', '_base_', 'explain', base)
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = [{own!r}, {shipped!r}]\n')
    runner = _runner(str(child), tmp_path / 'wd',
                     **{'custom_hooks.0.max_samples': 2})
    _load(runner, ckpt)
    if base == 'deletion_insertion.py':  # keep the test fast
        hook = next(h for h in runner.hooks
                    if type(h).__name__ == 'ExplainHook')
        hook.metrics_cfg[0].update(steps=4, cell_size=(2, 8, 8))
    metrics = runner.test()
    assert 'acc/top1' in metrics
    for key in keys:
        assert key in metrics
    assert [type(m).__name__ for m in runner.test_loop.evaluator.metrics] \
        == ['AccMetric']


def test_hook_metrics_must_be_explanation_metrics():
    from mmxai.engine import ExplainHook
    with pytest.raises(ConfigError, match='metric configs'):
        ExplainHook(metrics=['DeletionInsertionAUC'])
    with pytest.raises(ConfigError, match='not one'):
        ExplainHook._build_metric(dict(type='AccMetric'), None)
