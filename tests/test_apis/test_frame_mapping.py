"""Every crop/clip layout: each view's map lands in its own crop box and
frames of the original video (mmxai.apis.frame_mapping, the 2D adapter's
views read from the pipeline)."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmxai.adapters import build_adapter, inputs_to_frames
from mmxai.apis import explain_video
from mmxai.apis.frame_mapping import maps_to_original
from mmxai.apis.video_input import load_video_sample, read_frames
from mmxai.testing.toolbox_configs import load_recognition_config
from mmxai.utils.pipeline import find_test_pipeline, pipeline_crops
from tiny_models import (TEST_PIPELINE_3D, build, i3d_cfg, preprocess,
                         tsm_cfg, tsn_cfg, write_checkpoint, write_config,
                         write_video_file)

#: MMAction2's TSN config (mmaction::recognition/tsn/...): 25 x TenCrop.
TSN_CONFIG = 'tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py'
H0, W0 = 40, 56  # the test video
SHORT = 48       # Resize short side in the shrunk pipelines
CROP = 32


def small(pipeline, short=SHORT):
    """MMAction2's pipeline with its layout (sampling, crops) kept and its
    sizes shrunk: Resize to a short side of 48, crops of 32."""
    out = []
    for t in copy.deepcopy([dict(t) for t in pipeline]):
        if t['type'] == 'Resize':
            t['scale'] = (-1, short)
        if t['type'] in ('TenCrop', 'ThreeCrop', 'CenterCrop'):
            t['crop_size'] = CROP
        out.append(t)
    return out


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return write_video_file(tmp_path_factory.mktemp('fm') / 'v.mp4',
                            frames=30, height=H0, width=W0)


def tsn_pipeline():
    cfg = load_recognition_config(TSN_CONFIG)
    pipe = small(find_test_pipeline(cfg))
    types = [t['type'] for t in pipe]
    assert 'TenCrop' in types  # MMAction2's own TSN test pipeline
    sampler = pipe[types.index('SampleFrames')]
    assert (sampler['num_clips'], sampler['clip_len']) == (25, 1)
    return pipe


def three_crop_3d():
    pipe = [dict(t) for t in TEST_PIPELINE_3D]
    pipe[1] = dict(pipe[1], clip_len=4, num_clips=2)
    pipe[3] = dict(type='Resize', scale=(-1, CROP))  # ThreeCrop: short side
    pipe[4] = dict(type='ThreeCrop', crop_size=CROP)
    return pipe


def ten_crop_3d():
    pipe = three_crop_3d()
    pipe[3] = dict(type='Resize', scale=(-1, SHORT))
    pipe[4] = dict(type='TenCrop', crop_size=CROP)
    return pipe


def tsm_three_crop():
    return [dict(type='DecordInit'),
            dict(type='SampleFrames', clip_len=1, frame_interval=1,
                 num_clips=4, test_mode=True, twice_sample=True),
            dict(type='DecordDecode'), dict(type='Resize', scale=(-1, CROP)),
            dict(type='ThreeCrop', crop_size=CROP),
            dict(type='FormatShape', input_format='NCHW'),
            dict(type='PackActionInputs')]


def tsn_center():
    pipe = tsn_pipeline()
    i = [t['type'] for t in pipe].index('TenCrop')
    pipe[i] = dict(type='CenterCrop', crop_size=CROP)
    return pipe


def crop_boxes(kind, rw, rh):
    """Crop boxes by hand in resized px (MMAction2's offsets), and flips."""
    if kind == 'TenCrop':
        ws, hs = (rw - CROP) // 4, (rh - CROP) // 4
        offs = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs),
                (2 * ws, 2 * hs)]
        boxes = [(x, y) for x, y in offs for _ in (0, 1)]
        flips = [False, True] * 5
    elif kind == 'ThreeCrop':  # short side = crop: left, right, middle
        step = (rw - CROP) // 2
        boxes = [(0, 0), (2 * step, 0), (step, 0)]
        flips = [False] * 3
    else:
        boxes = [((rw - CROP) // 2, (rh - CROP) // 2)]
        flips = [False]
    s = W0 / rw
    return [(x * s, y * (H0 / rh), (x + CROP) * s, (y + CROP) * (H0 / rh))
            for x, y in boxes], flips


LAYOUTS = {
    # name: (pipeline, model cfg, crop kind, views, frames per view)
    'tsn_tencrop': (tsn_pipeline, tsn_cfg, 'TenCrop', 10, 25),
    'tsn_center': (tsn_center, tsn_cfg, 'CenterCrop', 1, 25),
    'tsm_twice_threecrop': (tsm_three_crop, lambda: tsm_cfg(num_segments=4),
                            'ThreeCrop', 6, 4),
    'i3d_multiclip_threecrop': (three_crop_3d, i3d_cfg, 'ThreeCrop', 6, 4),
    'i3d_multiclip_tencrop': (ten_crop_3d, i3d_cfg, 'TenCrop', 20, 4),
}


def setup(name, video):
    make_pipe, make_model, kind, views, frames = LAYOUTS[name]
    cfg = Config(dict(test_pipeline=make_pipe()))
    model = build(make_model())
    model.cfg = cfg
    sample = load_video_sample(video, cfg)
    inputs = preprocess(model, sample.data)['inputs']
    return model, sample, inputs, kind, views, frames


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_each_view_lands_in_its_crop_and_frames(name, video):
    model, sample, inputs, kind, views, frames = setup(name, video)
    adapter = build_adapter(model)
    b, v, t, h, w = adapter.input_shape(inputs)
    assert (v, t) == (views, frames)  # views read from the pipeline
    assert pipeline_crops(model.cfg.test_pipeline) == len(sample.crops)
    short = CROP if kind == 'ThreeCrop' else SHORT
    boxes, _ = crop_boxes(kind, int(W0 * short / H0 + 0.5), short)
    assert np.allclose([c.box for c in sample.crops], boxes)
    per_crop = views // len(boxes)
    inds = sample.frame_inds
    for vi in range(v):
        maps = np.zeros((v, t, h, w), np.float32)
        maps[vi] = 1.0  # a planted map on this view only
        idx, out, valid = maps_to_original(maps, inds, sample.crops,
                                           sample.original_shape)
        crop = vi // per_crop
        clip = vi % per_crop
        want = set(inds[clip * t:(clip + 1) * t].tolist())
        lit = {int(f) for f, m in zip(idx, out) if m.max() > 0}
        assert lit == want, (vi, lit, want)
        x1, y1, x2, y2 = boxes[crop]
        ys, xs = np.nonzero(out.max(0) > 0)
        assert xs.min() == round(x1) and xs.max() + 1 == round(x2), vi
        assert ys.min() == round(y1) and ys.max() + 1 == round(y2), vi


@pytest.mark.parametrize('name', ['tsn_tencrop', 'i3d_multiclip_tencrop',
                                  'tsm_twice_threecrop'])
def test_view_contents_map_back_onto_the_original_frames(name, video):
    """Maps equal to each view's own pixels, mapped back, reproduce the
    original frames where the views looked (crops, flips, frames)."""
    model, sample, inputs, *_ = setup(name, video)
    frames = inputs_to_frames(model, inputs)[0]  # [V, T, H, W, 3] RGB
    maps = frames.astype(np.float32).mean(-1)
    idx, out, valid = maps_to_original(maps, sample.frame_inds, sample.crops,
                                       sample.original_shape)
    orig = read_frames(sample.filename, idx).astype(np.float32).mean(-1)
    a, o = out[valid], orig[valid]
    corr = np.corrcoef(a, o)[0, 1]
    assert corr > 0.9, corr
    assert np.abs(a - o).mean() < 8


def test_tsn_tencrop_explained_end_to_end(video, tmp_path):
    """The toolbox's TSN test layout through explain_video: 10 views of 25
    segments, every crop mapped back (not all into one crop)."""
    cfg_file = write_config(tmp_path / 'tsn.py', tsn_cfg(), tsn_pipeline())
    model = build(tsn_cfg())
    ckpt = write_checkpoint(tmp_path / 'tsn.pth', model)
    res = explain_video(cfg_file, video, checkpoint=ckpt,
                        out_dir=str(tmp_path / 'o'), outputs=('npz', ))
    assert tuple(res.explanation.maps.shape) == (1, 10, 25, CROP, CROP)
    arrays = np.load(tmp_path / 'o' / 'maps.npz')
    valid = arrays['original_valid']
    boxes, _ = crop_boxes('TenCrop', int(W0 * SHORT / H0 + 0.5), SHORT)
    want = np.zeros((H0, W0), bool)
    for x1, y1, x2, y2 in boxes:
        want[round(y1):round(y2), round(x1):round(x2)] = True
    assert (valid == want).all()


def test_explicit_frames_per_view_still_wins(video):
    model, sample, inputs, *_ = setup('tsn_tencrop', video)
    adapter = build_adapter(model, frames_per_view=5)
    assert adapter.input_shape(inputs)[1:3] == (50, 5)
    # a chunk of views keeps the pipeline's frames per view
    adapter = build_adapter(model)
    assert adapter.input_shape(inputs[:, :200])[1:3] == (8, 25)
    video_t = adapter.to_video(inputs)
    assert torch.equal(adapter.from_video(video_t), inputs)
