"""Pictures of a long video's timeline (no model): the ``timeline.png``
figure, the ribbon strip with a cursor drawn on each overlay frame, and a
streaming MP4 writer that never holds more than one frame.

Colours: class ``c`` is ``class_colors(K)[c]`` everywhere (figure, strip,
HTML viewer): ``tab20`` for up to 20 classes, evenly spaced hues beyond.
"""
from __future__ import annotations

import os
import subprocess
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from mmxai.errors import OutputError
from mmxai.fileio import PathLike

__all__ = ['class_colors', 'ribbon_image', 'draw_cursor_strip',
           'importance_strip',
           'draw_text_panel', 'plot_timeline', 'StreamVideoWriter',
           'browser_codec_available', 'format_clock']

#: Colour of frames no window covers (and of failed windows).
NO_DATA = (60, 60, 60)


def class_colors(num_classes: int) -> np.ndarray:
    """uint8 RGB ``[K, 3]``: one colour per class."""
    import matplotlib
    k = max(1, int(num_classes))
    if k <= 20:
        cm = matplotlib.colormaps['tab20' if k > 10 else 'tab10']
        cols = np.array([cm(i)[:3] for i in range(k)])
    else:
        cm = matplotlib.colormaps['hsv']
        cols = np.array([cm(i / k)[:3] for i in range(k)])
    return np.round(cols * 255).astype(np.uint8)


def format_clock(seconds: float) -> str:
    """``'1:02:03'`` / ``'2:03'`` for a time in seconds."""
    s = int(round(max(0.0, float(seconds))))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f'{h}:{m:02d}:{s:02d}' if h else f'{m}:{s:02d}'


def ribbon_image(labels: np.ndarray, width: int, height: int,
                 colors: np.ndarray,
                 confidence: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 ``[height, width, 3]``: ``labels [N]`` (class per frame or per
    time bin, -1 = no data) resampled to ``width`` columns (nearest), each
    column in its class colour, darkened by ``confidence`` in [0, 1] when
    given (full colour at 1)."""
    labels = np.asarray(labels).reshape(-1)
    n = max(1, len(labels))
    cols = np.minimum((np.arange(width) + 0.5) * n / width, n - 1).astype(int)
    lab = labels[cols] if len(labels) else np.full(width, -1)
    rgb = np.empty((width, 3), np.float32)
    known = lab >= 0
    rgb[~known] = NO_DATA
    rgb[known] = colors[np.clip(lab[known], 0, len(colors) - 1)]
    if confidence is not None and len(labels):
        conf = np.clip(np.asarray(confidence, np.float32).reshape(-1)[cols],
                       0, 1)
        rgb[known] *= (0.35 + 0.65 * conf[known])[:, None]
    return np.broadcast_to(rgb.astype(np.uint8)[None],
                           (height, width, 3)).copy()


def importance_strip(values: np.ndarray, width: int, height: int,
                     explained: Optional[int] = None) -> np.ndarray:
    """uint8 ``[height, width, 3]``: ``values [width]`` (one per column,
    in [-1, 1], NaN: outside the context) as bars from the middle line:
    red up for positive, blue down for negative; the context's columns on
    a lighter grey, column ``explained`` (the time explained) ticked in
    white."""
    out = np.empty((height, width, 3), np.uint8)
    out[:] = (24, 24, 24)
    v = np.asarray(values, np.float32)
    inside = np.isfinite(v)
    out[:, inside] = (60, 60, 60)
    mid = height // 2
    out[mid, :] = (90, 90, 90)
    vv = np.where(inside, np.clip(v, -1, 1), 0.0)
    n = np.round(np.abs(vv) * (mid - 1)).astype(int)
    rows = np.arange(height)[:, None]
    up = (vv > 0) & (rows < mid) & (rows >= mid - n)
    down = (vv < 0) & (rows > mid) & (rows <= mid + n)
    out[up] = (230, 50, 40)
    out[down] = (50, 110, 230)
    if explained is not None and 0 <= explained < width:
        out[:, explained] = 255
    return out


def draw_cursor_strip(strip: np.ndarray, position: float) -> np.ndarray:
    """``strip`` with a white cursor (black edges) at ``position`` in
    [0, 1] of its width."""
    out = strip.copy()
    w = out.shape[1]
    x = int(round(np.clip(position, 0, 1) * (w - 1)))
    out[:, max(0, x - 2):x + 3] = 0
    out[:, max(0, x - 1):x + 2] = 255
    return out


def draw_text_panel(width: int, height: int, lines: Sequence[str],
                    bg=(0, 0, 0), fg=(255, 255, 255)) -> np.ndarray:
    """uint8 ``[height, width, 3]`` panel with ``lines`` (OpenCV's Hershey
    font: the panel has a fixed height, so every frame has one size)."""
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = bg
    n = max(1, len(lines))
    line_h = height / n
    scale = max(0.3, min(0.6, line_h / 30.0))
    for i, text in enumerate(lines):
        text = str(text)
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        while tw > width - 8 and len(text) > 4:
            text = text[:-4] + '...'
            (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX,
                                         scale, 1)
        y = int((i + 0.78) * line_h)
        cv2.putText(panel, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    fg, 1, cv2.LINE_AA)
    return panel


def plot_timeline(path: PathLike, times: np.ndarray, pred: np.ndarray,
                  confidence: np.ndarray, importance: np.ndarray,
                  class_names: Sequence[str],
                  gt: Optional[np.ndarray] = None,
                  gt_times: Optional[np.ndarray] = None,
                  title: str = '', accuracy: Optional[float] = None,
                  dpi: int = 100, window_s: Optional[float] = None,
                  sequence: Any = None) -> str:
    """``timeline.png``: the predicted class over time (a ribbon, its
    colour darkened where the model is unsure), the ground truth below it
    when given, the explained class's probability and the temporal
    importance (evidence of each window, as a share of the largest).

    Args:
        times: ``[W]`` window centres in seconds.
        pred, confidence, importance: ``[W]`` per window (pred -1: failed).
        gt, gt_times: class per ground-truth sample and its time (s).
        window_s: a window's duration (s): the width of a lone window.
        sequence: a :class:`~mmxai.outputs.SequenceTrack` (whole-video
            temporal attribution of a phase model): one more panel per
            method (three at most), x the source time, y the time
            explained (the last explained time at or before y), each row
            scaled by its largest ``|value|`` (red: raises the score).
    """
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .figures import _save_png
    times = np.asarray(times, np.float64)
    pred = np.asarray(pred, np.int64)
    k = len(class_names)
    colors = class_colors(k) / 255.0
    span = (times.min(), times.max()) if len(times) else (0.0, 1.0)
    if span[1] <= span[0]:
        span = (span[0], span[0] + 1.0)
    seq_methods = list(sequence.importance)[:3] if sequence is not None \
        and len(sequence) else []
    rows = 3 + (gt is not None) + len(seq_methods)
    ratios = [1.0] + ([1.0] if gt is not None else []) + [1.6, 1.6] + \
        [3.2] * len(seq_methods)
    fig, axes = plt.subplots(rows, 1, figsize=(14, 1.2 + 1.1 * rows + 1.4 *
                                               len(seq_methods)),
                             sharex=True, gridspec_kw=dict(
                                 height_ratios=ratios, hspace=0.15))
    minutes = times / 60.0
    edges = _edges(minutes, half=(window_s or 60.0) / 120.0)
    edges[0] = max(edges[0], 0.0)  # nothing before the video's start

    def ribbon(ax, values, conf, label):
        rgba = np.ones((1, len(values), 4))
        ok = values >= 0
        rgba[0, ok, :3] = colors[np.clip(values[ok], 0, k - 1)]
        rgba[0, ~ok, :3] = np.array(NO_DATA) / 255.0
        if conf is not None:
            rgba[0, ok, :3] *= (0.35 + 0.65 * np.clip(conf[ok], 0, 1))[:, None]
        ax.imshow(rgba, aspect='auto', interpolation='nearest',
                  extent=(edges[0], edges[-1], 0, 1))
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha='right', va='center')

    ax = axes[0]
    ribbon(ax, pred, confidence, 'predicted')
    i = 1
    if gt is not None:
        gt = np.asarray(gt, np.int64)
        gt_t = np.asarray(gt_times, np.float64) / 60.0
        # one column per second at most: readable and light for 90 minutes
        step = max(1, len(gt) // 4000)
        gt_edges = _edges(gt_t[::step])
        rgba = np.ones((1, len(gt[::step]), 4))
        g = gt[::step]
        ok = g >= 0
        rgba[0, ok, :3] = colors[np.clip(g[ok], 0, k - 1)]
        rgba[0, ~ok, :3] = np.array(NO_DATA) / 255.0
        axes[1].imshow(rgba, aspect='auto', interpolation='nearest',
                       extent=(gt_edges[0], gt_edges[-1], 0, 1))
        axes[1].set_yticks([])
        axes[1].set_ylabel('ground truth', rotation=0, ha='right',
                           va='center')
        i = 2
    ax = axes[i]
    ax.stairs(np.nan_to_num(np.asarray(confidence, np.float64)), edges,
              fill=True, color='0.35', alpha=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel('p(explained\nclass)', rotation=0, ha='right',
                  va='center')
    ax.grid(alpha=0.3)
    ax = axes[i + 1]
    imp = np.nan_to_num(np.asarray(importance, np.float64))
    top = imp.max() if imp.size and imp.max() > 0 else 1.0
    ax.stairs(imp / top, edges, fill=True, color='tab:red', alpha=0.8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel('temporal\nimportance', rotation=0, ha='right',
                  va='center')
    ax.grid(alpha=0.3)
    for j, m in enumerate(seq_methods):
        ax = axes[i + 2 + j]
        y0, y1 = edges[0] * 60, edges[-1] * 60
        ys = np.linspace(y0, y1, 241)
        img, cols = sequence.matrix(m, 0.5 * (ys[:-1] + ys[1:]))
        ax.imshow(np.ma.masked_invalid(img), aspect='auto', origin='lower',
                  interpolation='nearest', cmap='RdBu_r', vmin=-1, vmax=1,
                  extent=(cols[0] / 60, cols[-1] / 60, y0 / 60, y1 / 60))
        ax.plot([y0 / 60, y1 / 60], [y0 / 60, y1 / 60], color='0.5', lw=0.6,
                ls=':')
        ax.set_ylim(y0 / 60, y1 / 60)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: format_clock(v * 60)))
        ax.tick_params(axis='y', labelsize=7)
        ax.set_ylabel(f'what drives\nthe phase at t\n({m})',
                      rotation=0, ha='right', va='center')
        ax.grid(alpha=0.2)
    ax = axes[-1]
    ax.set_xlim(edges[0], edges[-1])
    if (edges[-1] - edges[0]) * 60 < 60:  # under a minute: seconds
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: f'{x * 60:.1f}'))
        ax.set_xlabel('time (s)')
    else:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda x, _: format_clock(x * 60)))
        ax.set_xlabel('time (h:mm:ss)')
    shown = [c for c in range(k) if np.any(pred == c) or (
        gt is not None and np.any(gt == c))][:20]
    handles = [Patch(color=colors[c], label=str(class_names[c]))
               for c in shown]
    if handles:
        fig.legend(handles=handles, loc='upper center', ncol=min(
            len(handles), 7), fontsize=8, frameon=False,
            bbox_to_anchor=(0.5, 0.995))
    head = title
    if accuracy is not None:
        head += f'   frame accuracy {accuracy:.1%}'
    fig.suptitle(head, y=0.02, fontsize=9, va='bottom')
    figh = fig.get_figheight()  # margins in inches: the same at any height
    fig.subplots_adjust(left=0.12 if seq_methods else 0.1, right=0.98,
                        top=1 - min(0.14, 0.75 / figh),
                        bottom=min(0.2, 0.95 / figh))
    try:
        return _save_png(fig, path, dpi)
    finally:
        plt.close(fig)


def _edges(x: np.ndarray, half: float = 0.5) -> np.ndarray:
    """Bin edges around centres ``x`` (``[N + 1]``); a lone centre gets
    ``+-half``."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return np.array([0.0, 1.0])
    if len(x) == 1:
        return np.array([x[0] - half, x[0] + half])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid,
                           [x[-1] + (x[-1] - mid[-1])]])


def browser_codec_available() -> bool:
    """Whether H.264 (what every browser plays) can be written: the
    ``imageio-ffmpeg`` package's FFmpeg is installed."""
    try:
        import imageio_ffmpeg
        return os.path.isfile(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:  # noqa: BLE001 - optional package
        return False


class StreamVideoWriter:
    """Write RGB frames one at a time to an MP4 (constant memory).

    H.264 (yuv420p, ``+faststart``) through the FFmpeg of ``imageio-ffmpeg``
    when installed, so browsers play it; else OpenCV's ``mp4v`` (MPEG-4
    part 2, which desktop players read but browsers do not). Use as a
    context manager on a temporary path (e.g. ``fileio.atomic_path``).

    Attributes:
        codec: ``'h264'`` or ``'mp4v'``.
    """

    def __init__(self, path: PathLike, fps: float, size: tuple,
                 prefer_h264: bool = True, crf: int = 28) -> None:
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.height, self.width = int(size[0]), int(size[1])
        if self.height % 2 or self.width % 2:
            raise OutputError(f'video size {self.width}x{self.height} must '
                              'be even')
        self._proc = None
        self._cv = None
        self.frames = 0
        if prefer_h264 and browser_codec_available():
            import imageio_ffmpeg
            exe = imageio_ffmpeg.get_ffmpeg_exe()
            cmd = [exe, '-loglevel', 'error', '-y', '-f', 'rawvideo',
                   '-pix_fmt', 'rgb24', '-s', f'{self.width}x{self.height}',
                   '-r', f'{self.fps:.6f}', '-i', '-', '-an', '-c:v',
                   'libx264', '-preset', 'veryfast', '-crf', str(crf),
                   '-pix_fmt', 'yuv420p', '-threads', '1', '-movflags',
                   '+faststart', '-f', 'mp4', self.path]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                          stderr=subprocess.PIPE)
            self.codec = 'h264'
        else:
            self._cv = cv2.VideoWriter(self.path,
                                       cv2.VideoWriter_fourcc(*'mp4v'),
                                       self.fps, (self.width, self.height))
            if not self._cv.isOpened():
                raise OutputError(f'cannot write video {self.path}')
            self.codec = 'mp4v'

    def write(self, frame: np.ndarray) -> None:
        """One uint8 RGB frame ``[H, W, 3]`` of the writer's size."""
        if frame.shape[:2] != (self.height, self.width):
            raise OutputError(f'frame {frame.shape[:2]} is not of the '
                              f'video size {(self.height, self.width)}')
        if self._proc is not None:
            try:
                self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except BrokenPipeError as e:
                raise OutputError(f'cannot write video {self.path}: '
                                  f'{self._ffmpeg_error()}') from e
        else:
            self._cv.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _ffmpeg_error(self) -> str:
        err = self._proc.stderr.read().decode(errors='replace').strip()
        return err.splitlines()[-1] if err else 'FFmpeg stopped'

    def close(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.stdin.close()
            code = proc.wait()
            if code != 0:
                self._proc = proc
                msg = self._ffmpeg_error()
                self._proc = None
                raise OutputError(f'cannot write video {self.path}: {msg}')
            proc.stderr.close()
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def abort(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> 'StreamVideoWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
