"""A small on-disk video dataset, config and checkpoint for toolbox-level
tests (ExplainHook through tools/test.py, dataset runs, metrics)."""
import os
import os.path as osp
import sys
from typing import Optional, Sequence

import numpy as np
import torch

from mmxai.testing.clips import write_toy_clip
from tiny_models import build, i3d_cfg

NUM_CLASSES = 4
SIZE = 32


def make_dataset(root: str, num: int = 6, corrupt: Sequence[int] = ()) -> str:
    """``num`` videos (and ``.npz`` masks) under ``root/videos`` plus the
    annotation file ``root/ann.txt``; indices in ``corrupt`` get garbage."""
    vdir = osp.join(root, 'videos')
    os.makedirs(vdir, exist_ok=True)
    lines = []
    for i in range(num):
        name = f'clip{i:02d}.mp4'
        label = i % NUM_CLASSES
        path = osp.join(vdir, name)
        mask = write_toy_clip(path, label=label, seed=i)
        np.savez(osp.join(vdir, f'clip{i:02d}.npz'), mask=mask,
                 active_frames=np.arange(mask.shape[0]), label=label)
        if i in corrupt:
            with open(path, 'wb') as f:
                f.write(b'this is not a video' * 10)
        lines.append(f'{name} {label}')
    ann = osp.join(root, 'ann.txt')
    with open(ann, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return ann


def save_checkpoint(path: str, seed: int = 0) -> str:
    model = build(i3d_cfg(num_classes=NUM_CLASSES), seed=seed)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def write_config(path: str, root: str, hooks: Optional[list] = None,
                 evaluator: Optional[list] = None, batch_size: int = 2,
                 meta_keys: Optional[Sequence[str]] = None,
                 imports: Sequence[str] = ('mmxai', 'mmxai.engine',
                                           'mmxai.evaluation')) -> str:
    """A complete MMAction2 test config (tiny I3D, VideoDataset)."""
    pack = dict(type='PackActionInputs')
    if meta_keys:
        pack['meta_keys'] = tuple(meta_keys)
    model = i3d_cfg(num_classes=NUM_CLASSES)
    text = f"""
default_scope = 'mmaction'
custom_imports = dict(imports={list(imports)!r}, allow_failed_imports=False)
model = {model!r}
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=8, frame_interval=1, num_clips=1,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, {SIZE})),
    dict(type='CenterCrop', crop_size={SIZE}),
    dict(type='FormatShape', input_format='NCTHW'),
    {pack!r},
]
test_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='VideoDataset', ann_file={osp.join(root, 'ann.txt')!r},
                 data_prefix=dict(video={osp.join(root, 'videos')!r}),
                 pipeline=test_pipeline, test_mode=True))
test_evaluator = {evaluator or [dict(type='AccMetric')]!r}
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=1))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
log_level = 'INFO'
load_from = None
resume = False
"""
    if hooks is not None:
        text += f'custom_hooks = {hooks!r}\n'
    with open(path, 'w') as f:
        f.write(text)
    return path


def test_script() -> str:
    """MMAction2's own ``tools/test.py`` shipped in the installed wheel."""
    import importlib.util
    spec = importlib.util.find_spec('mmaction')
    root = list(spec.submodule_search_locations)[0]
    return osp.join(root, '.mim', 'tools', 'test.py')


PYTHON = sys.executable
EXPLAIN_CLI = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "tools", "explain.py")
