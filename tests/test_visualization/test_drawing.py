"""Tests for mmxai.visualization: colour maps, overlays, writers, figures."""
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mmxai.errors import InputError, MMXAIError
from mmxai.visualization import (atomic_path, colorize, draw_label_panel, focus_frames,
                                 overlay_heatmap, plot_temporal_importance, resize_maps,
                                 save_montage, select_frames, temporal_importance,
                                 upscale_frames, write_gif, write_video)

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def smooth_clip(T=8, H=32, W=32, seed=0):
    """Smooth, distinct frames (codecs keep them close to the original)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = []
    for t in range(T):
        r = 127 + 100 * np.sin(xx / W * 2 * np.pi + t * 0.7)
        g = 127 + 100 * np.cos(yy / H * 2 * np.pi + t * 0.3)
        b = np.full_like(r, 40.0 + 20 * t)
        frames.append(np.stack([r, g, b], -1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def blob_maps(T=8, H=32, W=32):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    maps = [np.exp(-((yy - H / 2) ** 2 + (xx - (t + 1) * W / (T + 2)) ** 2) / (2 * (W / 8) ** 2))
            for t in range(T)]
    return np.stack(maps).astype(np.float32)


def no_temp_files(folder):
    return not [n for n in os.listdir(folder) if '.tmp' in n]


# ----------------------------------------------------------------- colorize
def test_colorize_shapes_and_dtype():
    m = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    c = colorize(m)
    assert c.shape == (4, 5, 6, 3) and c.dtype == np.uint8
    assert colorize(m[0, 0, 0]).shape == (3,)
    assert np.array_equal(colorize(torch.from_numpy(m)), c)


def test_colorize_jet_endpoints_and_monotonic_hue():
    c = colorize(np.linspace(0, 1, 256)[None])[0]
    lo, hi = c[0].astype(int), c[-1].astype(int)
    assert lo[2] > 100 and lo[2] > lo[0] + 80 and lo[2] > lo[1] + 80  # blue
    assert hi[0] > 100 and hi[0] > hi[1] + 80 and hi[0] > hi[2] + 80  # red
    hue = cv2.cvtColor(c[None], cv2.COLOR_RGB2HSV)[0, :, 0].astype(int)
    assert np.all(np.diff(hue) <= 0) and hue[0] > hue[-1]  # blue (120) -> red (0)
    grey = colorize(np.linspace(0, 1, 256), cmap='gray')
    assert np.all(np.diff(grey[:, 0].astype(int)) >= 0) and grey[0, 0] == 0 and grey[-1, 0] == 255


def test_colorize_clips_and_treats_nan_as_zero():
    c = colorize(np.array([np.nan, -3.0, 0.0, 1.0, 7.0]))
    assert np.array_equal(c[0], c[2]) and np.array_equal(c[1], c[2])
    assert np.array_equal(c[4], c[3])


def test_colorize_unknown_cmap_is_user_error():
    with pytest.raises(MMXAIError, match='colour map'):
        colorize(np.zeros((2, 2)), cmap='no-such-map')


# ------------------------------------------------------------------ overlay
def test_overlay_blend_and_resize():
    frames, maps = smooth_clip(), blob_maps(H=8, W=8)  # maps at 8x8 -> resized to 32x32
    out = overlay_heatmap(frames, maps)
    assert out.shape == frames.shape and out.dtype == np.uint8
    big = resize_maps(maps, (32, 32))
    assert big.shape == (8, 32, 32)
    expected = np.rint(0.5 * frames.astype(np.float32) + 0.5 * colorize(big)).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(overlay_heatmap(frames, big, alpha=0.0), frames)
    assert np.array_equal(overlay_heatmap(frames, big, alpha=1.0), colorize(big))
    # torch inputs, single frame, map broadcast over time
    assert np.array_equal(overlay_heatmap(torch.from_numpy(frames), torch.from_numpy(big)), out)
    assert overlay_heatmap(frames[0], big[0]).shape == (32, 32, 3)
    assert overlay_heatmap(frames, big[0]).shape == frames.shape


@pytest.mark.parametrize('per_frame', [False, True])
def test_overlay_valid_mask_exact(per_frame):
    frames, maps = smooth_clip(), blob_maps()
    mask = np.zeros((32, 32), bool)
    mask[4:28, 6:26] = True  # e.g. the center crop the model saw
    if per_frame:
        mask = np.repeat(mask[None], 8, 0)
        mask[3] = False
    out = overlay_heatmap(frames, maps, valid_mask=mask)
    full = np.broadcast_to(mask, (8, 32, 32))
    assert np.array_equal(out[~full], frames[~full])
    assert np.array_equal(out[full], overlay_heatmap(frames, maps)[full])
    assert not np.array_equal(out[full], frames[full])


def test_overlay_shape_mismatch_is_user_error():
    with pytest.raises(InputError, match='frames'):
        overlay_heatmap(smooth_clip(T=8), blob_maps(T=5))


def test_focus_frames_alpha_is_map():
    frames, maps = smooth_clip(), blob_maps()
    out = focus_frames(frames, maps)
    assert out.shape == (8, 32, 32, 4) and out.dtype == np.uint8
    assert np.array_equal(out[..., :3], frames)
    assert np.array_equal(out[..., 3], np.rint(maps * 255).astype(np.uint8))


# ------------------------------------------------------------------- labels
def test_draw_label_panel_upscales_small_frames_and_draws_text():
    frames = smooth_clip(T=3, H=64, W=64)
    lines = ['GT: jumping jacks', 'pred: jumping jacks 0.93', 'top-5: a b c d e']
    out = draw_label_panel(frames, lines, min_size=256)
    assert out.dtype == np.uint8 and out.shape[0] == 3 and out.shape[2] == 256
    panel_h = out.shape[1] - 256
    assert 30 < panel_h < 256
    assert np.array_equal(out[:, panel_h:], upscale_frames(frames, 256))
    panel = out[0, :panel_h]
    assert (panel.min(-1) > 200).sum() > 100  # white text on black
    assert np.array_equal(out[0, :panel_h], out[2, :panel_h])  # same lines -> same panel
    bottom = draw_label_panel(frames, lines, position='bottom')
    assert np.array_equal(bottom[:, :256], upscale_frames(frames, 256))
    over = draw_label_panel(frames, lines, position='overlay')
    assert over.shape == (3, 256, 256, 3)
    big = upscale_frames(frames, 256)
    assert np.array_equal(over[:, -60:], big[:, -60:]) and not np.array_equal(over[:, :20], big[:, :20])
    # per-frame text differs per frame; min_size=0 keeps the frame size
    per = draw_label_panel(frames, [['t=0'], ['t=1'], ['t=2']], min_size=0, font_size=12)
    assert per.shape[2] == 64 and not np.array_equal(per[0], per[1])
    with pytest.raises(InputError):
        draw_label_panel(frames, [['a'], ['b']])


def test_draw_label_panel_long_line_fits():
    frames = smooth_clip(T=1, H=64, W=64)
    out = draw_label_panel(frames, ['x' * 300])
    assert out.shape[2] == 256  # truncated with an ellipsis, never wider


# ------------------------------------------------------------------ writers
def test_write_video_round_trip_with_decord(tmp_path):
    decord = pytest.importorskip('decord')
    frames = smooth_clip(T=9, H=33, W=49)  # odd sizes are padded to even
    path = write_video(tmp_path / 'sub' / 'clip.mp4', frames, fps=12)
    assert path == str(tmp_path / 'sub' / 'clip.mp4') and os.path.getsize(path) > 0
    vr = decord.VideoReader(path)
    assert len(vr) == 9
    data = vr.get_batch(list(range(9))).asnumpy()
    assert data.shape == (9, 34, 50, 3)
    err = np.abs(data[:, :33, :49].astype(int) - frames.astype(int)).mean()
    assert err < 12, err  # RGB order kept (measured ~4; a BGR swap gives ~49)
    assert abs(vr.get_avg_fps() - 12) < 0.5
    assert no_temp_files(tmp_path / 'sub')


def test_write_video_replaces_atomically(tmp_path):
    path = tmp_path / 'out.mp4'
    path.write_bytes(b'old')
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, 'wb') as fh:
                fh.write(b'partial')
            raise RuntimeError('writer crashed')
    assert path.read_bytes() == b'old' and no_temp_files(tmp_path)
    write_video(path, smooth_clip(T=2, H=16, W=16))
    assert path.read_bytes() != b'old' and no_temp_files(tmp_path)
    with pytest.raises(InputError):
        write_video(tmp_path / 'empty.mp4', np.zeros((0, 16, 16, 3), np.uint8))
    assert not (tmp_path / 'empty.mp4').exists()


def test_write_gif_frames_loop_and_max_size(tmp_path):
    frames = smooth_clip(T=6, H=40, W=60)
    path = write_gif(tmp_path / 'a.gif', frames, fps=10)
    with Image.open(path) as im:
        assert im.format == 'GIF' and im.n_frames == 6 and im.size == (60, 40)
        assert im.info.get('loop') == 0 and im.info.get('duration') == 100
        im.seek(3)
        back = np.asarray(im.convert('RGB')).astype(int)
    assert np.abs(back - frames[3].astype(int)).mean() < 8
    small = write_gif(tmp_path / 'b.gif', frames, max_size=30)
    with Image.open(small) as im:
        assert im.size == (30, 20) and im.n_frames == 6
    assert no_temp_files(tmp_path)


# ------------------------------------------------------------------ figures
def test_temporal_importance_mass():
    maps = np.full((6, 8, 8), 0.1, np.float32)
    maps[3] *= 2  # twice as strong in frame 3
    imp = temporal_importance(maps)
    assert imp.shape == (6,) and np.isclose(imp.sum(), 1.0)
    assert np.isclose(imp[3], 2 * imp[0]) and np.allclose(imp[[0, 1, 2, 4, 5]], imp[0])
    assert np.array_equal(temporal_importance(np.zeros((4, 3, 3))), np.zeros(4))
    nan = maps.copy()
    nan[0, 0, 0] = np.nan
    assert np.isfinite(temporal_importance(nan)).all()
    batched = temporal_importance(torch.from_numpy(np.stack([maps, maps[::-1]])))
    assert batched.shape == (2, 6) and np.isclose(batched[1, 2], 2 * batched[1, 0])


def _png_size(path):
    with open(path, 'rb') as fh:
        assert fh.read(8) == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_save_montage_png(tmp_path):
    had_pyplot = 'matplotlib.pyplot' in sys.modules
    frames, maps = smooth_clip(T=16), blob_maps(T=16)
    path = save_montage(tmp_path / 'm.png', frames, maps, num_frames=8, suptitle='pred: x')
    w, h = _png_size(path)
    assert 800 < w < 3000 and 200 < h < 1000 and w > h
    assert np.array_equal(select_frames(16, 8), [0, 2, 4, 6, 9, 11, 13, 15])
    path2 = save_montage(tmp_path / 'm2.png', frames, maps, frame_indices=[1, 5, 9],
                         titles=['a', 'b', 'c'], source_indices=np.arange(16) * 4,
                         valid_mask=np.ones((32, 32), bool))
    w2, _ = _png_size(path2)
    assert w2 < w  # 3 columns instead of 8
    with pytest.raises(InputError):
        save_montage(tmp_path / 'bad.png', frames, maps, frame_indices=[1, 2], titles=['a'])
    assert no_temp_files(tmp_path)
    if not had_pyplot:
        assert 'matplotlib.pyplot' not in sys.modules  # the user's backend is untouched


def test_plot_temporal_importance_png(tmp_path):
    fast = temporal_importance(blob_maps(T=32))
    slow = temporal_importance(blob_maps(T=4))
    path = plot_temporal_importance(tmp_path / 'p.png', fast, title='Grad-CAM')
    assert _png_size(path) == (640, 360)
    path = plot_temporal_importance(
        tmp_path / 'q.png', {'slow': slow, 'fast': fast},
        frame_indices={'slow': np.arange(4) * 8, 'fast': np.arange(32)}, normalize='mean')
    assert _png_size(path) == (640, 360)
    with pytest.raises(InputError):
        plot_temporal_importance(tmp_path / 'r.png', fast, frame_indices=np.arange(5))


# ------------------------------------------------------------ signed maps
def test_signed_colorize_zero_is_the_neutral_middle_colour():
    from matplotlib import colormaps
    from mmxai.visualization import is_signed, signed_scale
    neutral = np.rint(np.asarray(colormaps['RdBu_r'](0.5)[:3]) * 255)
    c = colorize(np.array([-1.0, 0.0, 1.0]), 'RdBu_r', signed=True).astype(int)
    assert np.array_equal(c[1], neutral)
    assert c[0, 2] > c[0, 0] + 60 and c[2, 0] > c[2, 2] + 60  # blue, red
    assert is_signed(np.array([-0.5, 1.0])) and not is_signed(np.array([0.0, 1.0]))
    assert not is_signed(np.array([-1e-9, 1.0]))  # float noise is not a sign
    np.testing.assert_allclose(
        signed_scale(np.array([-0.5, 0.0, 2.0]), percentile=100), [-0.25, 0, 1])
    # P99: one extreme value is clipped, the rest keeps its contrast
    m = np.concatenate([np.linspace(-1, 1, 999), [0.0, 100.0]])
    s = signed_scale(m)
    assert s.max() == 1.0 and s[-1] == 1.0 and np.abs(s[:-2]).max() > 0.99
    assert s[-2] == 0.0  # zero stays zero


def test_overlay_signed_map_zero_pixels_are_neutral_and_positive_unchanged():
    frames = np.full((2, 8, 8, 3), 100, np.uint8)
    m = np.zeros((2, 8, 8), np.float32)
    m[:, :, :2] = -3.0  # raw, signed: detected and scaled by P99(|m|)
    m[:, :, -2:] = 6.0
    out = overlay_heatmap(frames, m)
    # zero evidence: the plain frame (weight alpha * |map| = 0)
    assert np.array_equal(out[:, :, 3:5], frames[:, :, 3:5])
    from mmxai.visualization import signed_scale
    assert np.array_equal(out, overlay_heatmap(frames, signed_scale(m),
                                               signed=True, cmap='RdBu_r'))
    full = colorize(np.ones(1), 'RdBu_r', signed=True)[0].astype(np.float32)
    assert np.array_equal(out[0, 0, -1], np.rint(0.5 * 100 + 0.5 * full)
                          .astype(np.uint8))  # +1: the alpha blend
    assert out[0, 0, 0, 2] > out[0, 0, 0, 0] + 15  # negative: blue
    # a non-negative map keeps the jet blend of before
    pos = blob_maps(T=2, H=8, W=8)
    jet = colorize(pos, 'jet').astype(np.float32)
    expect = np.clip(np.rint(0.5 * frames + 0.5 * jet), 0, 255).astype(np.uint8)
    assert np.array_equal(overlay_heatmap(frames, pos), expect)


def test_montage_long_title_stays_inside_the_figure(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mmxai.visualization import wrap_title
    name = 'an_extremely_long_class_name ' * 4
    name = name[:120]
    title = f'gradcam: {name} (p=0.93) | top-5: {name} 0.93, run 0.04'
    path = save_montage(tmp_path / 'm.png', smooth_clip(T=2), blob_maps(T=2),
                        suptitle=title)
    img = np.asarray(Image.open(path).convert('RGB')).astype(int)
    band = img[:img.shape[0] // 6]  # the title rows
    dark = (band < 200).any(-1)
    assert dark.any()  # the title is drawn ...
    assert not dark[:, :3].any() and not dark[:, -3:].any()  # ... inside
    fig = Figure(figsize=(4, 2), dpi=100)
    FigureCanvasAgg(fig)
    wrapped = wrap_title(fig, title, 11)
    assert 2 <= wrapped.count('\n') + 1 <= 4
    t = fig.suptitle(wrapped, fontsize=11)
    box = t.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi


def test_plot_signed_series(tmp_path):
    path = plot_temporal_importance(
        tmp_path / 'p.png', {'positive': [0.2, 0.3], 'negative': [-0.4, -0.1]},
        colors={'positive': 'tab:red', 'negative': 'tab:blue'}, title='x' * 150)
    assert open(path, 'rb').read(8) == PNG_MAGIC
