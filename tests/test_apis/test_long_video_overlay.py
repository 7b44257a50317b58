"""The long-video overlay drawn during the sweep (from the frames the sweep
decodes) against the second pass after the sweep (the video decoded again,
the maps read back from their chunks): the same frames, bit for bit, when
both resize the same way; only the frame's pixels differ (by the scaler)
with decord scaling; the live strip; the full strip of the second pass."""
import os.path as osp

import numpy as np
import pytest

from mmxai.apis import explain_long_video, init_recognizer
from mmxai.apis import long_video as lv
from mmxai.apis.video_input import test_pipeline_cfg as pipeline_of
from mmxai.visualization import timeline as vt
from tiny_models import (build, i3d_cfg, write_checkpoint, write_config,
                         write_video_file)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('long_overlay')
    model = build(i3d_cfg())
    cfg = write_config(d / 'cfg.py')
    ckpt = write_checkpoint(d / 'model.pth', model)
    return dict(model=init_recognizer(cfg, ckpt),
                video=write_video_file(d / 'long.mp4', frames=100, fps=10))


@pytest.fixture
def written(monkeypatch):
    """Every frame handed to the overlay writers, by file."""
    got = {}
    orig = vt.StreamVideoWriter.write

    def write(self, frame):
        name = 'plain' if 'plain.mp4' in osp.basename(self.path) else \
            'overlay'
        got.setdefault(name, []).append(frame.copy())
        orig(self, frame)
    monkeypatch.setattr(vt.StreamVideoWriter, 'write', write)
    return got


def _second_pass(files, tl, stride, written, **kw):
    written.clear()
    stream = lv.VideoStream(files['video'])
    plan = lv.plan_windows(pipeline_of(files['model'].cfg),
                           stream.num_frames, stream.fps, stride)
    names = lv._class_names(tl, files['model'].cls_head.num_classes)
    lv._write_overlay(tl, plan, stream, 5, 64, names, **kw)
    return {k: np.stack(v) for k, v in written.items()}, plan


@pytest.mark.parametrize('stride,cap', [('10f', None), ('24f', 1)])
def test_overlay_in_the_sweep_is_the_second_pass(files, tmp_path, written,
                                                 monkeypatch, stride, cap):
    """'10f': windows of 16 frames overlap (heat maps averaged over two);
    '24f': gaps between windows (frames decoded after the batch), and a
    buffer of one frame (the covered frames beyond it decoded again)."""
    if cap:
        monkeypatch.setattr(lv, 'OVERLAY_BUFFER_BYTES', 1)
    tl = explain_long_video(files['model'], files['video'],
                            out_dir=str(tmp_path / 'out'), stride=stride,
                            batch_size=3, overlay_fps=5, overlay_size=64,
                            outputs=('video',), progress=False)
    assert tl.settings['overlay_timeline'] == 'live'
    inline = {k: np.stack(v) for k, v in written.items()}
    assert inline['overlay'].shape[0] == 50  # 100 frames at 10 -> 5 fps
    same, plan = _second_pass(files, tl, stride, written, live=True,
                              decoder_scale=False)
    for k in ('overlay', 'plain'):
        assert np.array_equal(inline[k], same[k]), k
    # the heat maps are there (the overlay is not the plain video)
    assert np.abs(inline['overlay'].astype(int) - inline['plain']).mean() > 1
    ov = lv._Overlay(tl, plan, (40, 56), 5, 64, lv._class_names(
        tl, files['model'].cls_head.num_classes))
    p, oh, w = ov.panel_h, ov.oh, ov.ow  # 36, 46, 64 (enlarged)
    # decord's own scaler: the frame's pixels differ a little, nothing else
    scaled, _ = _second_pass(files, tl, stride, written, live=True,
                             decoder_scale=True)
    for k in ('overlay', 'plain'):
        a, b = inline[k].astype(int), scaled[k].astype(int)
        assert a.shape == b.shape == (50, p + oh + 10, w, 3)
        assert np.array_equal(a[:, :p], b[:, :p])  # the label panel
        assert np.array_equal(a[:, p + oh:], b[:, p + oh:])  # the strip
        assert np.abs(a[:, p:p + oh] - b[:, p:p + oh]).mean() < 8, k
    # the live strip: prediction colours up to the cursor, grey after it
    full = vt.ribbon_image(tl.frame_predictions(ov.src), w, 10, ov.colors)
    strip = inline['plain'][:, p + oh:]  # [N, 10, w, 3]
    n = len(ov.src)
    for m in (0, n // 2, n - 1):
        f = ov.src[m]
        x = int(round((f - plan.start) / (plan.end - 1 - plan.start) *
                      (w - 1)))
        far = [c for c in range(w) if abs(c - x) > 2]  # off the cursor
        seen = [c for c in far if ov.cols[c] <= m]
        ahead = [c for c in far if ov.cols[c] > m]
        assert np.array_equal(strip[m][:, seen], full[:, seen])
        assert (strip[m][:, ahead] == vt.NO_DATA).all()
    # 'full': the whole video's predictions from the first frame on
    whole, _ = _second_pass(files, tl, stride, written, live=False)
    first = whole['plain'][0, p + oh:]
    far = [c for c in range(w) if c > 2]
    assert np.array_equal(first[:, far], full[:, far])
    assert (full != np.array(vt.NO_DATA, np.uint8)).any()


def test_overlay_timeline_full_is_a_second_pass(files, tmp_path, written):
    tl = explain_long_video(files['model'], files['video'],
                            out_dir=str(tmp_path / 'out'), end='48f',
                            overlay_timeline='full', overlay_size=64,
                            outputs=('video',), progress=False)
    assert tl.settings['overlay_timeline'] == 'full'
    assert len(written['overlay']) == 24 and osp.isfile(tl.files['video'])


def test_overlay_timeline_refused(files, tmp_path):
    from mmxai.errors import InputError
    with pytest.raises(InputError, match="'live' or 'full'"):
        explain_long_video(files['model'], files['video'],
                           out_dir=str(tmp_path / 'o'),
                           overlay_timeline='half', progress=False)


@pytest.mark.parametrize('cmap', ['jet', 'viridis'])
def test_half_blend_is_the_general_formula(cmap):
    """overlay_heatmap's integer path (alpha 0.5, unsigned: every overlay
    frame) against the float formula (1 - a) f + a c, rounded half to
    even, on values that hit the ties, with a valid mask."""
    from mmxai.visualization import overlay_heatmap
    from mmxai.visualization.colormap import colorize
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    maps = rng.random((2, 9, 11)).astype(np.float32)
    maps[0, 0, :4] = [0.0, 1.0, -0.5, 2.0]  # clipped
    valid = rng.random((9, 11)) > 0.2
    got = overlay_heatmap(frames, maps, alpha=0.5, cmap=cmap,
                          valid_mask=valid, signed=False)
    c = colorize(maps, cmap).astype(np.float32)
    ref = np.clip(np.rint(0.5 * frames.astype(np.float32) + 0.5 * c),
                  0, 255).astype(np.uint8)
    ref = np.where(valid[None, ..., None], ref, frames)
    assert np.array_equal(got, ref)
    ties = ((frames.astype(int) + c.astype(int)) % 2 == 1)
    assert ties.mean() > 0.3  # half the sums are odd: the rounding counts
