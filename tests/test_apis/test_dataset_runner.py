"""Dataset runs: records + manifest, failures recorded, resume, torchrun."""
import json
import os
import os.path as osp
import shutil
import subprocess

import numpy as np
import pytest

import explain_data as data
from mmxai.apis.dataset_runner import explain_dataset


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('videos'))
    data.make_dataset(root, num=5, corrupt=[2])
    ckpt = data.save_checkpoint(osp.join(root, 'ckpt.pth'))
    cfg = data.write_config(osp.join(root, 'cfg.py'), root)
    return root, ckpt, cfg


@pytest.fixture(scope='module')
def one_process(dataset, tmp_path_factory):
    root, ckpt, cfg = dataset
    out = str(tmp_path_factory.mktemp('one'))
    return explain_dataset(cfg, ckpt, out, 'gradcam'), out


def _manifest(path):
    with open(path) as f:
        return json.load(f)


def test_manifest_records_and_corrupt_sample(one_process):
    path, out = one_process
    man = _manifest(path)
    assert man['num_samples'] == 5
    assert man['counts'] == {'ok': 4, 'failed': 1, 'missing': 0}
    bad = man['samples'][2]
    assert bad['status'] == 'failed' and bad['error']
    assert bad['filename'].endswith('clip02.mp4')
    for i in (0, 1, 3, 4):
        s = man['samples'][i]
        assert s['status'] == 'ok'
        with np.load(osp.join(out, s['files'][0])) as z:
            assert z['maps'].shape == (1, 1, 8, 32, 32)
    assert not [f for f in os.listdir(osp.join(out, 'records'))
                if f.startswith('.')]  # no temporary files left


def test_resume_after_interruption(dataset, one_process, tmp_path):
    root, ckpt, cfg = dataset
    _, full = one_process
    out = str(tmp_path / 'run')
    shutil.copytree(full, out)
    # as if interrupted before samples 3 and 4, mid-write of 3's record
    for i in (3, 4):
        os.remove(osp.join(out, 'records', f'{i:06d}.json'))
    os.remove(osp.join(out, 'maps', '000004.npz'))
    os.remove(osp.join(out, 'manifest.json'))
    with open(osp.join(out, 'records', '.000003.json.x.tmp.json'), 'w') as f:
        f.write('{"stat')
    kept = {i: os.stat(osp.join(out, 'records', f'{i:06d}.json')).st_mtime_ns
            for i in (0, 1)}
    man = _manifest(explain_dataset(cfg, ckpt, out, 'gradcam'))
    assert man['counts'] == {'ok': 4, 'failed': 1, 'missing': 0}
    for i, t in kept.items():  # finished samples were skipped
        assert os.stat(osp.join(out, 'records',
                                f'{i:06d}.json')).st_mtime_ns == t
    for i in (3, 4):
        with np.load(osp.join(out, 'maps', f'{i:06d}.npz')) as a, \
                np.load(osp.join(full, 'maps', f'{i:06d}.npz')) as b:
            np.testing.assert_allclose(a['maps'], b['maps'], atol=1e-6)


def test_two_processes_equal_one(dataset, one_process, tmp_path):
    root, ckpt, cfg = dataset
    _, full = one_process
    out = str(tmp_path / 'two')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    torchrun = osp.join(osp.dirname(data.PYTHON), 'torchrun')
    proc = subprocess.run(
        [torchrun, '--nproc_per_node', '2', '--master_port', '29531',
         data.EXPLAIN_CLI, cfg, ckpt, '--out-dir', out,
         '--launcher', 'pytorch'], capture_output=True, text=True, env=env,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = _manifest(osp.join(out, 'manifest.json')), _manifest(
        osp.join(full, 'manifest.json'))
    assert two['world_size'] == 2
    assert [s['status'] for s in two['samples']] == \
        [s['status'] for s in one['samples']]
    for s in one['samples']:
        if s['status'] != 'ok':
            continue
        with np.load(osp.join(out, s['files'][0])) as a, \
                np.load(osp.join(full, s['files'][0])) as b:
            np.testing.assert_allclose(a['maps'], b['maps'], atol=1e-5)
            assert (a['targets'] == b['targets']).all()


def test_resume_with_other_settings_refuses(dataset, one_process, tmp_path):
    """Records carry the settings that made them; resuming with another
    method, target or layer refuses in one line, --no-resume redoes."""
    from mmxai.errors import ConfigError
    root, ckpt, cfg = dataset
    _, full = one_process
    out = str(tmp_path / 'run')
    shutil.copytree(full, out)
    with open(osp.join(out, 'records', '000000.json')) as f:
        assert json.load(f)['run']['method'] == 'gradcam'
    for kwargs, what in ((dict(method='gradcam++'), 'method'),
                         (dict(target=1), 'target'),
                         (dict(target_layers=['backbone.layer3']),
                          'settings')):
        args = {'method': 'gradcam', **kwargs}
        with pytest.raises(ConfigError, match=f'another {what}'):
            explain_dataset(cfg, ckpt, out, **args)
    man = _manifest(explain_dataset(cfg, ckpt, out, 'gradcam', target=1,
                                    resume=False))
    assert man['target'] == '1' and man['counts']['ok'] == 4


@pytest.mark.parametrize('bad', ['checkpoint', 'method', 'layer'])
def test_bad_input_writes_nothing(dataset, tmp_path, bad):
    """A missing checkpoint, an unknown method or layer: one MMXAIError and
    no Runner log folder or config dump in the output folder."""
    from mmxai.errors import MMXAIError
    root, ckpt, cfg = dataset
    out = tmp_path / 'out'
    kwargs = dict(checkpoint=ckpt, method='gradcam')
    if bad == 'checkpoint':
        kwargs['checkpoint'] = str(tmp_path / 'missing.pth')
    elif bad == 'method':
        kwargs['method'] = 'no_such_method'
    else:
        kwargs['target_layers'] = ['backbone.no_such_layer']
    with pytest.raises(MMXAIError):
        explain_dataset(cfg, out_dir=str(out), **kwargs)
    assert not out.exists()


def test_logs_kept_under_logs(one_process):
    path, out = one_process
    logs = os.listdir(osp.join(out, 'logs'))
    assert logs and all(not n.startswith('.') for n in logs)


def test_resume_redoes_a_damaged_maps_file(dataset, one_process, tmp_path):
    root, ckpt, cfg = dataset
    _, full = one_process
    out = str(tmp_path / 'run')
    shutil.copytree(full, out)
    with open(osp.join(out, 'maps', '000001.npz'), 'wb') as f:
        f.write(b'PK\x03\x04 truncated')  # damaged after the record
    kept = os.stat(osp.join(out, 'records', '000000.json')).st_mtime_ns
    man = _manifest(explain_dataset(cfg, ckpt, out, 'gradcam'))
    assert man['counts']['ok'] == 4
    assert os.stat(osp.join(out, 'records',
                            '000000.json')).st_mtime_ns == kept
    with np.load(osp.join(out, 'maps', '000001.npz')) as z:
        assert z.files  # redone, loadable again


@pytest.mark.parametrize('case,text', [
    ('target', 'target class 9 is out of range: the model has 4 classes'),
    ('missing_ann', 'annotation file not found'),
    ('empty_ann', 'is empty'),
    ('malformed_ann', 'cannot build the test dataset from the config'),
])
def test_dataset_input_errors_write_nothing(dataset, tmp_path, case, text):
    from mmxai.errors import MMXAIError
    root, ckpt, cfg = dataset
    kwargs = dict(target=9) if case == 'target' else {}
    ann = tmp_path / 'ann.txt'
    if case == 'empty_ann':
        ann.write_text('')
    elif case == 'malformed_ann':
        ann.write_text('clip00.mp4 not_a_label extra\n')
    if case != 'target':
        kwargs['cfg_options'] = {'test_dataloader.dataset.ann_file': str(ann)}
    out = tmp_path / 'out'
    with pytest.raises(MMXAIError, match=text):
        explain_dataset(cfg, ckpt, str(out), 'gradcam', **kwargs)
    assert not out.exists() or os.listdir(out) == []


def test_tsn_tencrop_views_read_from_the_dataset_pipeline(dataset, tmp_path):
    """The Runner's model has no ``.cfg``: the dataset's own pipeline gives
    the view layout (10 crops x 3 segments, not one view of 30 frames)."""
    from tiny_models import tsn_cfg
    root, _, cfg = dataset
    text = open(cfg).read() + f"""
model = {tsn_cfg(num_classes=data.NUM_CLASSES)!r}
test_dataloader['dataset']['pipeline'] = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=3,
         test_mode=True),
    dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 32)),
    dict(type='TenCrop', crop_size=24),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')]
"""
    tsn = tmp_path / 'tsn.py'
    tsn.write_text(text)
    out = str(tmp_path / 'out')
    man = _manifest(explain_dataset(str(tsn), None, out, 'gradcam'))
    assert man['counts']['ok'] == 4
    with np.load(osp.join(out, man['samples'][0]['files'][0])) as z:
        assert z['maps'].shape[:3] == (1, 10, 3)
