"""Video outputs: signed colour scale, fps, overlapping clips, compact npz."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from mmxai.apis.outputs import video_fps, video_track, write_video_outputs
from mmxai.apis.video_input import CropRegion, VideoSample
from mmxai.explainers import Explanation
from mmxai.outputs import (HOOK_LAYOUT, OutputWriter, RankOutputs,
                           combine_over_frames, display_maps, view_tracks)
from mmxai.visualization import colormap_lut
from tiny_models import write_video_file

H = W = 16


def _exp(raw):
    raw = torch.as_tensor(raw, dtype=torch.float32)
    lo = raw.flatten(2).min(-1)[0][..., None, None, None]
    hi = raw.flatten(2).max(-1)[0][..., None, None, None]
    maps = (raw - lo) / (hi - lo).clamp_min(1e-12)
    return Explanation(maps=maps, raw_maps=raw, targets=torch.tensor([1]),
                       scores=torch.tensor([[0.1, 2.0, 0.3]]),
                       method='integrated_gradients')


def _signed_raw(v=1, t=8):
    """Positive on the left quarter, negative on the right quarter, 0 in
    the middle half."""
    raw = np.zeros((1, v, t, H, W), np.float32)
    raw[..., :, :4] = 2.0
    raw[..., :, -4:] = -1.0
    return raw


def _sample(video, frame_inds, fps=0.0):
    return VideoSample(data={}, frame_inds=np.asarray(frame_inds),
                       original_shape=(40, 56),
                       crops=[CropRegion((0.0, 0.0, 56.0, 40.0))], fps=fps,
                       filename=video)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return write_video_file(tmp_path_factory.mktemp('v') / 'clip.mp4',
                            frames=16, fps=12)


def test_signed_maps_are_drawn_centred_at_zero(tmp_path):
    exp = _exp(_signed_raw())
    maps, signed = display_maps(exp)
    assert signed and maps.min() == -0.5 and maps.max() == 1.0
    assert (maps[..., 4:-4] == 0).all()  # zero stays zero (not ~0.33)
    frames = np.full((1, 8, H, W, 3), 128, np.uint8)
    track, = view_tracks(exp, frames, [0])
    assert track.signed and track.plot_colors
    assert set(track.importance) == {'positive', 'negative'}
    assert track.importance['negative'].max() < 0
    writer = OutputWriter(('json', 'gif', 'montage', 'plot'), HOOK_LAYOUT,
                          alpha=0.5)
    writer.write_sample(str(tmp_path), 0, [RankOutputs({}, [track])],
                        record=lambda f: {}, explanation=exp)
    rec = json.load(open(tmp_path / '000000' / 'explanation.json'))
    assert rec['colour_scale'].startswith('diverging (RdBu_r), centred at 0')
    from PIL import Image
    gif = Image.open(tmp_path / '000000' / 'view0.gif').convert('RGB')
    px = np.asarray(gif).astype(int)
    # the middle (map 0) is the plain frame (overlay weight alpha * |map|)
    assert np.abs(px[8, 8] - 128).max() <= 6
    left, right = px[8, 1], px[8, -2]
    assert left[0] > left[2] + 25 and right[2] > right[0] + 15  # red, blue


def test_positive_maps_keep_the_sequential_scale():
    raw = np.abs(_signed_raw())
    exp = _exp(raw)
    maps, signed = display_maps(exp)
    assert not signed and np.array_equal(maps, exp.maps[0].numpy())
    track, = view_tracks(exp, None, [0])
    assert not track.signed and track.plot_colors is None
    np.testing.assert_allclose(track.importance,
                               exp.temporal_importance()[0, 0].numpy(),
                               rtol=1e-5)
    assert OutputWriter(('json', ), HOOK_LAYOUT).colour_scale(exp) == \
        'sequential (jet), min-max per view: 0 = min, 1 = max'


def test_overlapping_clips_give_one_curve():
    # clip 0 saw the even frames, clip 1 the odd ones (interleaved)
    inds = np.array([np.arange(0, 16, 2), np.arange(1, 16, 2)])
    values = np.array([np.full(8, 1.0), np.full(8, 3.0)])
    grid, curve = combine_over_frames(values, inds)
    assert grid.tolist() == list(range(16))
    # frame by frame that was 1, 3, 1, 3, ...: now the mean of both clips
    assert curve[0] == 1 and curve[-1] == 3
    np.testing.assert_allclose(curve[1:-1], 2.0)
    # identical frames (e.g. crops of one clip): their mean
    _, same = combine_over_frames(values, np.stack([inds[0], inds[0]]))
    np.testing.assert_allclose(same, 2.0)


def test_video_track_overlapping_clips_plot_is_smooth(video):
    v, t = 2, 8
    raw = np.zeros((1, v, t, H, W), np.float32)
    raw[0, 0] = np.linspace(1, 2, t)[:, None, None]  # clip 0: rising
    raw[0, 1] = np.linspace(1, 2, t)[:, None, None] * 3  # clip 1: larger
    exp = _exp(np.abs(raw) + 0.1)
    frame_inds = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2)])
    track = video_track(exp, _sample(video, frame_inds))
    curve, = track.importance.values()
    assert track.frame_indices.tolist() == list(range(16))
    assert curve.sum() == pytest.approx(1.0)
    signs = np.sign(np.diff(curve[1:-1]))
    assert (np.diff(signs) == 0).all()  # monotonic: no zig-zag


def _mp4_fps(path):
    cap = cv2.VideoCapture(path)
    try:
        return cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()


@pytest.mark.parametrize('step', [1, 2])
def test_fps_is_the_source_videos(video, tmp_path, step):
    source = _mp4_fps(video)
    assert source == pytest.approx(12)
    exp = _exp(np.abs(_signed_raw(t=16 // step)))
    sample = _sample(video, np.arange(0, 16, step), fps=0.0)  # as packed
    assert video_fps(sample) == pytest.approx(source)
    paths = write_video_outputs(str(tmp_path), exp, sample,
                                outputs=('video', 'json'))
    rec = json.load(open(paths['json']))
    assert rec['fps'] == pytest.approx(source)
    # the overlay shows every step-th frame and lasts as long as the video
    assert rec['overlay_fps'] == pytest.approx(source / step)
    assert _mp4_fps(paths['video']) == pytest.approx(source / step, abs=0.01)


def test_npz_is_compact_per_original_frame_unless_asked(video, tmp_path):
    exp = _exp(_signed_raw(v=3))
    sample = _sample(video, np.arange(8))
    paths = write_video_outputs(str(tmp_path / 'a'), exp, sample,
                                outputs=('npz', 'json'))
    with np.load(paths['npz']) as z:
        assert sorted(z.files) == ['original_frame_inds', 'original_maps',
                                   'original_valid', 'scores', 'targets']
        m = z['original_maps']
        assert m.dtype == np.float16 and m.shape == (8, 40, 56)
        assert m.min() < 0 and m.max() == 1  # signed, views combined
    rec = json.load(open(paths['json']))
    assert rec['npz_maps'] == 'per original frame (views combined)'
    paths = write_video_outputs(str(tmp_path / 'b'), exp, sample,
                                outputs=('npz', ), per_view_maps=True)
    with np.load(paths['npz']) as z:
        assert z['maps'].shape == (1, 3, 8, H, W)
        assert z['maps'].dtype == np.float16
        assert z['raw_maps'].dtype == np.float32
        np.testing.assert_array_equal(z['raw_maps'], exp.raw_maps.numpy())
        assert 'original_maps' in z.files
    assert osp.getsize(paths['npz']) > 0


def test_callable_target_labels_say_what_was_explained():
    from mmxai.outputs import headline, top5_line
    exp = _exp(np.ones((1, 1, 2, H, W), np.float32))
    assert headline(exp, ['a', 'b', 'c']) == \
        'integrated_gradients: b (p=0.75)'
    exp.settings['target'] = 'callable:contrast'
    exp.scores, exp.targets = torch.tensor([[1.5]]), torch.tensor([0])
    assert headline(exp, ['a', 'b', 'c']) == \
        'integrated_gradients: callable:contrast (value=1.5)'
    assert top5_line(exp) == 'explained: callable:contrast = 1.5'
