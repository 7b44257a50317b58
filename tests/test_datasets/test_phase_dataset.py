"""Cholec80Dataset / PhaseVideoDataset on generated Cholec80-layout
procedures: window rule, labels against the generator's own phases, tools,
one-line errors, and MMAction2's own tools/train.py + tools/test.py."""
import os
import os.path as osp
import shutil
import subprocess

import numpy as np
import pytest

import mmxai  # noqa: F401
from mmaction.utils import register_all_modules
from mmxai.datasets import (CHOLEC80_PHASES, Cholec80Dataset,
                            PhaseVideoDataset, generate_procedures,
                            window_frames)
from mmxai.errors import MMXAIError

register_all_modules(init_default_scope=True)
FPS = 5.0
ROOT_CFG = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs', 'surgical')


@pytest.fixture(scope='module')
def procs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cholec'))
    paths = generate_procedures(root, [1, 2, 3], seed=0, duration_s=30,
                                fps=FPS, size=32)
    return root, paths


def _truth(paths, n):
    m = np.load(paths[n - 1]['mask'])
    return m['phase']


def test_window_rule_and_online_labels(procs):
    root, paths = procs
    ds = Cholec80Dataset(data_root=root, videos='1-2', clip_len=4,
                         sample_fps=1.0)
    for n in (1, 2):
        phase = _truth(paths, n)
        infos = [ds.get_data_info(i) for i in range(len(ds))
                 if ds.get_data_info(i)['video_id'] == f'video{n:02d}']
        # one window per grid frame (1 fps over a 5 fps video)
        assert len(infos) == int(np.ceil(len(phase) / FPS))
        for k, info in enumerate(infos):
            end = 5 * k
            want = np.maximum(np.arange(end - 15, end + 1, 5), 0)
            assert info['frame_inds'].tolist() == want.tolist()
            assert info['label'] == phase[end]
            assert info['label_frame'] == end
            assert info['frame_labels'].tolist() == phase[want].tolist()
            assert info['clip_len'] == 4 and info['num_clips'] == 1
    centre = Cholec80Dataset(data_root=root, videos=[1], clip_len=4,
                             label_at='centre', stride=3, pad_start=False)
    phase = _truth(paths, 1)
    info = centre.get_data_info(1)
    # window ending at grid frame 3 + 3 = 6 (frame 30) spans frames 11..30
    assert info['frame_inds'].tolist() == [15, 20, 25, 30]
    assert info['label_frame'] == (11 + 30) // 2
    assert info['label'] == phase[(11 + 30) // 2]


def test_segments_and_tools(procs):
    root, paths = procs
    ds = Cholec80Dataset(data_root=root, videos=[3], clip_len=8,
                         num_segments=4)
    info = ds.get_data_info(20)
    end = 20 * 5
    # a span of 8 grid steps (40 frames) in 4 segments of 10: middles
    assert info['frame_inds'].tolist() == [end - 34, end - 24, end - 14,
                                           end - 4]
    assert info['clip_len'] == 1 and info['num_clips'] == 4
    assert window_frames(2, 25, 1, 8, 4).tolist() == [0, 0, 0, 0]
    # tools: the generator's own presence at the label frame (1 fps rows
    # hold for the second)
    m = np.load(paths[2]['mask'])
    phase = m['phase']
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert info['tools'].shape == (7, )
        assert info['tools'][phase[info['label_frame']]] == 1


def test_pipeline_sample(procs):
    root, _ = procs
    pipe = [dict(type='DecordInit'), dict(type='DecordDecode'),
            dict(type='Resize', scale=(-1, 32)),
            dict(type='FormatShape', input_format='NCTHW'),
            dict(type='PackActionInputs',
                 meta_keys=('video_id', 'label_frame', 'frame_labels'))]
    ds = Cholec80Dataset(data_root=root, videos=[1], clip_len=4,
                         pipeline=pipe)
    out = ds[10]
    assert tuple(out['inputs'].shape) == (1, 3, 4, 32, 32)
    s = out['data_samples']
    assert s.video_id == 'video01' and s.label_frame == 50
    assert int(s.gt_label) == _truth(_paths_of(root), 1)[50]


def _paths_of(root):
    return [dict(mask=osp.join(root, 'masks', f'video{n:02d}-masks.npz'))
            for n in (1, 2, 3)]


def test_plain_csv_variant(tmp_path, procs):
    root, paths = procs
    shutil.copy(paths[0]['video'], tmp_path / 'caseA.mp4')
    phase = _truth(paths, 0 + 1)
    change = [0] + [i for i in range(1, len(phase))
                    if phase[i] != phase[i - 1]]
    names = ['idle', 'cut', 'clip', 'dissect', 'pack', 'clean', 'retract']
    with open(tmp_path / 'caseA.csv', 'w') as f:
        f.write('time,label\n')
        for i in change:
            f.write(f'{i / FPS:.2f},{names[phase[i]]}\n')
    ds = PhaseVideoDataset(data_prefix=dict(video=str(tmp_path),
                                            label=str(tmp_path)),
                           classes=names, clip_len=2)
    labels = [ds.get_data_info(i)['label'] for i in range(len(ds))]
    assert labels == [int(phase[5 * k]) for k in range(len(ds))]
    assert ds.metainfo['classes'] == tuple(names)


def _one_line_error(match, **kw):
    with pytest.raises(MMXAIError) as e:
        Cholec80Dataset(**kw)
    msg = str(e.value)
    assert '\n' not in msg, msg
    assert match in msg, msg
    return msg


def test_bad_inputs_one_line(tmp_path, procs):
    root, _ = procs
    bad = str(tmp_path / 'bad')
    shutil.copytree(root, bad)
    ph = osp.join(bad, 'phase_annotations')
    tl = osp.join(bad, 'tool_annotations')
    # missing annotation file
    os.remove(osp.join(ph, 'video02-phase.txt'))
    msg = _one_line_error('video02-phase.txt not found', data_root=bad,
                          videos=[2])
    assert 'video02.mp4' in msg
    # missing video
    _one_line_error('video07.mp4 not found', data_root=bad, videos=[7])
    # unknown phase name
    lines = open(osp.join(ph, 'video01-phase.txt')).read().splitlines()
    lines[5] = '4\tSuturing'
    with open(osp.join(ph, 'video01-phase.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    msg = _one_line_error("label 'Suturing' is not a class", data_root=bad,
                          videos=[1])
    assert 'GallbladderRetraction' in msg
    # label file shorter than the video
    lines = open(osp.join(ph, 'video03-phase.txt')).read().splitlines()
    with open(osp.join(ph, 'video03-phase.txt'), 'w') as f:
        f.write('\n'.join(lines[:len(lines) // 2]) + '\n')
    _one_line_error('but the video lasts', data_root=bad, videos=[3])
    # mismatched tool file (another video's, longer) and a bad header
    shutil.copy(osp.join(root, 'phase_annotations', 'video03-phase.txt'),
                ph)
    tools = open(osp.join(tl, 'video03-tool.txt')).read().splitlines()
    with open(osp.join(tl, 'video03-tool.txt'), 'w') as f:
        f.write('\n'.join(tools + [f'{int(tools[-1].split()[0]) + 25 * k}'
                                   '\t1\t0\t0\t0\t0\t0\t0'
                                   for k in range(1, 20)]) + '\n')
    _one_line_error('give the tool file of this video', data_root=bad,
                    videos=[3])
    with open(osp.join(tl, 'video03-tool.txt'), 'w') as f:
        f.write('Frame Hook\n0 1\n')
    _one_line_error("expected Cholec80's", data_root=bad, videos=[3])
    # the tools are optional
    assert len(Cholec80Dataset(data_root=bad, videos=[3],
                               data_prefix=dict(tool=None))) > 0
    # options
    _one_line_error("label_at='end'", data_root=bad, videos=[3],
                    label_at='end')
    _one_line_error("'x' is not a video number", data_root=bad,
                    videos='1-3,x')


@pytest.mark.sweep  # two toolbox processes: ~60 s on 2 shared cores
def test_toolbox_train_and_test(tmp_path, procs):
    """MMAction2's own tools/train.py and tools/test.py, unchanged, on the
    shipped Cholec80 config (a tiny ResNet and 64 px instead of R50/224)."""
    import explain_data
    root, _ = procs
    train_py = osp.join(osp.dirname(explain_data.test_script()), 'train.py')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f"""
_base_ = [{osp.join(ROOT_CFG, 'resnet50_frames_cholec80.py')!r}]
data_root = {root!r}
model = dict(backbone=dict(depth=18), cls_head=dict(in_channels=512))
_pipe = [dict(type='DecordInit'), dict(type='DecordDecode'),
         dict(type='Resize', scale=(32, 32), keep_ratio=False),
         dict(type='FormatShape', input_format='NCHW'),
         dict(type='PackActionInputs', meta_keys={{{{_base_.phase_meta_keys}}}})]
_loader = dict(batch_size=8, num_workers=0, persistent_workers=False)
train_dataloader = dict(_loader, dataset=dict(data_root=data_root,
                        videos='1-2', pipeline=_pipe))
val_dataloader = dict(_loader, dataset=dict(data_root=data_root, videos='3',
                      pipeline=_pipe))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1)
param_scheduler = []
env_cfg = dict(dist_cfg=dict(backend='gloo'))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(save_best=None, interval=1))
""")
    env = dict(os.environ, OMP_NUM_THREADS='1')
    work = str(tmp_path / 'work')
    proc = subprocess.run([explain_data.PYTHON, train_py, str(cfg),
                           '--work-dir', work], capture_output=True,
                          text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'acc/top1' in out
    ckpt = osp.join(work, 'epoch_1.pth')
    proc = subprocess.run([explain_data.PYTHON, explain_data.test_script(),
                           str(cfg), ckpt, '--work-dir', work],
                          capture_output=True, text=True, env=env,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'acc/top1' in out


def test_phase_names_are_cholec80s():
    assert CHOLEC80_PHASES[1] == 'CalotTriangleDissection'
    assert len(CHOLEC80_PHASES) == 7
