"""The synthetic action dataset: determinism, ground truth, videos, dataset class."""
import os.path as osp

import numpy as np
import pytest

import mmxai  # noqa: F401
from mmxai.datasets import (CLASSES, count_frames, generate_dataset, load_gt,
                            make_clip, read_video)

TINY = dict(num_frames=8, size=32, noise=0.0)


def _object_pixels(frame, other):
    """Pixels that differ between two noise-free frames of one clip."""
    return np.abs(frame.astype(int) - other.astype(int)).sum(-1) > 0


def test_make_clip_is_deterministic_for_a_seed():
    a = make_clip(2, np.random.default_rng(7), **TINY)
    b = make_clip(2, np.random.default_rng(7), **TINY)
    c = make_clip(2, np.random.default_rng(8), **TINY)
    for key in ('frames', 'mask', 'active_frames'):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a['frames'], c['frames'])


@pytest.mark.parametrize('label', range(len(CLASSES)))
def test_mask_only_in_active_frames_and_moves_in_class_direction(label):
    clip = make_clip(label, np.random.default_rng(label), num_frames=16, size=48)
    frames, mask, active = clip['frames'], clip['mask'], clip['active_frames']
    assert frames.shape == (16, 48, 48, 3) and frames.dtype == np.uint8
    assert mask.shape == (16, 48, 48) and mask.dtype == bool
    assert clip['label'] == label
    assert 0 < len(active) < 16
    np.testing.assert_array_equal(active, np.arange(active[0], active[-1] + 1))
    per_frame = mask.any(axis=(1, 2))
    np.testing.assert_array_equal(np.flatnonzero(per_frame), active)
    # The mask's centre of mass moves in the class's direction.
    ys, xs = zip(*[np.argwhere(mask[t]).mean(0) for t in active])
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    expected = {0: dx > 0, 1: dx < 0, 2: dy > 0, 3: dy < 0}[label]
    assert expected and min(abs(dx), abs(dy)) < 1e-6


def test_mask_covers_moving_object_and_not_distractors():
    rng = np.random.default_rng(3)
    clip = make_clip(0, rng, num_frames=12, size=48, noise=0.0, texture=0.0)
    frames, mask, active = clip['frames'], clip['mask'], clip['active_frames']
    # Flat background: object pixels are those away from the background colour.
    background = np.median(frames[0].reshape(-1, 3), axis=0)
    objects = np.abs(frames.astype(int) - background).sum(-1) > 30  # [T, H, W]
    t = active[len(active) // 2]
    # Every mask pixel shows an object (the sprite's dark cross aside).
    assert objects[t][mask[t]].mean() > 0.8
    # The distractors: object pixels outside the mask, static over time, and
    # present in every frame; none of them is in the mask.
    static = objects.all(axis=0) & ~mask.any(axis=0)
    assert static.sum() >= 2 * 0.8 * mask[t].sum()  # two distractors drawn
    assert not (mask & static[None]).any()
    # Between two active frames only the moving object's pixels change.
    changed = _object_pixels(frames[active[0]], frames[active[-1]])
    assert changed.any()
    assert not (changed & ~(mask[active[0]] | mask[active[-1]])).any()
    # Outside the active frames the scene is still (the object rests).
    still = [t for t in range(1, 12) if t not in active and t - 1 not in active]
    for t in still:
        assert not _object_pixels(frames[t], frames[t - 1]).any()


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        make_clip(9, np.random.default_rng(0), **TINY)
    with pytest.raises(ValueError):
        make_clip(0, np.random.default_rng(0), bogus=1)


def test_generate_dataset_writes_readable_videos_and_masks(tmp_path):
    root = str(tmp_path)
    ann = generate_dataset(root, 2, split='val', seed=1, **TINY)
    lines = open(ann).read().split('\n')
    lines = [ln for ln in lines if ln]
    assert len(lines) == 2 * len(CLASSES)
    labels = sorted(int(ln.split()[1]) for ln in lines)
    assert labels == sorted(list(range(len(CLASSES))) * 2)
    rel, label = lines[0].split()
    path = osp.join(root, rel)
    assert count_frames(path) == TINY['num_frames']
    video = read_video(path)
    assert video.shape == (8, 32, 32, 3)
    gt = load_gt(osp.splitext(path)[0] + '.npz')
    assert gt['label'] == int(label) and gt['mask'].shape == (8, 32, 32)
    assert gt['mask'].any()
    # Same seed, same clip (first one regenerated in a second folder).
    ann2 = generate_dataset(str(tmp_path / 'again'), 2, split='val', seed=1, **TINY)
    assert open(ann2).read() == open(ann).read()
    gt2 = load_gt(osp.join(str(tmp_path / 'again'), osp.splitext(rel)[0] + '.npz'))
    np.testing.assert_array_equal(gt['mask'], gt2['mask'])


def test_synthetic_video_dataset_from_registry(tmp_path):
    from mmengine.registry import DefaultScope

    from mmxai.registry import DATASETS
    root = str(tmp_path)
    ann = generate_dataset(root, 1, split='test', seed=2, **TINY)
    pipeline = [
        dict(type='DecordInit'),
        dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1,
             test_mode=True),
        dict(type='DecordDecode'),
        dict(type='FormatShape', input_format='NCTHW'),
        dict(type='PackActionInputs'),
    ]
    # The pipeline's transforms live in MMAction2's scope, as in a config
    # with default_scope='mmaction'.
    with DefaultScope.overwrite_default_scope('mmaction'):
        ds = DATASETS.build(dict(type='mmxai.SyntheticVideoDataset', ann_file=ann,
                                 data_prefix=dict(video=root),
                                 pipeline=pipeline, test_mode=True))
    assert len(ds) == len(CLASSES)
    assert ds.metainfo['classes'] == tuple(CLASSES)
    info = ds.get_data_info(0)
    assert osp.isfile(info['gt_mask_path'])
    assert load_gt(info['gt_mask_path'])['label'] == info['label']
    sample = ds[0]
    assert tuple(sample['inputs'].shape) == (1, 3, 4, 32, 32)
    assert int(sample['data_samples'].gt_label) == info['label']


def test_synthetic_video_dataset_by_scoped_name_from_mmaction(tmp_path):
    from mmaction.registry import DATASETS
    from mmengine.registry import DefaultScope
    root = str(tmp_path)
    ann = generate_dataset(root, 1, split='train', seed=3, **TINY)
    with DefaultScope.overwrite_default_scope('mmaction'):
        ds = DATASETS.build(dict(type='mmxai.SyntheticVideoDataset',
                                 ann_file=ann, data_prefix=dict(video=root),
                                 mask_prefix=str(tmp_path / 'masks'),
                                 pipeline=[]))
    info = ds.get_data_info(0)
    rel = osp.splitext(osp.relpath(info['filename'], root))[0] + '.npz'
    assert info['gt_mask_path'] == osp.join(str(tmp_path / 'masks'), rel)
