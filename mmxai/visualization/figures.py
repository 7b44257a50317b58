"""Static figures: key-frame montages and temporal-importance plots (PNG).

Matplotlib is used through ``Figure`` + ``FigureCanvasAgg`` only, so the
user's pyplot backend and open figures are never touched.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mmxai.errors import InputError

from .colormap import CmapLike, as_map, as_rgb_frames, to_numpy
from .overlay import overlay_heatmap
from .video_writer import PathLike, atomic_path


def temporal_importance(maps: Any) -> np.ndarray:
    """Share of the total map mass in each frame.

    Args:
        maps: ``[T, H, W]`` (or ``[..., T, H, W]``); NaN and negative values
            count as 0.

    Returns:
        float64 ``[T]`` (``[..., T]``) summing to 1 over T; all zeros when a map
        has no mass.
    """
    m = as_map(maps)
    if m.ndim < 3:
        raise InputError(f'maps must be [T, H, W], got shape {tuple(m.shape)}')
    per_frame = np.clip(m, 0.0, None).astype(np.float64).sum(axis=(-2, -1))
    total = per_frame.sum(axis=-1, keepdims=True)
    return np.divide(per_frame, total, out=np.zeros_like(per_frame), where=total > 0)


def _new_figure(figsize: Tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: PathLike, dpi: int) -> str:
    with atomic_path(path, suffix='.png') as tmp:
        fig.savefig(tmp, format='png', dpi=dpi)
    return str(path)


def select_frames(num_total: int, num_frames: int = 8) -> np.ndarray:
    """``num_frames`` evenly spaced indices in ``[0, num_total)`` (all if fewer)."""
    if num_total <= 0:
        raise InputError('no frames to select from')
    n = max(1, min(int(num_frames), num_total))
    return np.unique(np.rint(np.linspace(0, num_total - 1, n)).astype(int))


def save_montage(path: PathLike,
                 frames: Any,
                 maps: Any,
                 frame_indices: Optional[Sequence[int]] = None,
                 titles: Optional[Sequence[str]] = None,
                 num_frames: int = 8,
                 alpha: float = 0.5,
                 cmap: CmapLike = 'jet',
                 valid_mask: Optional[Any] = None,
                 source_indices: Optional[Sequence[int]] = None,
                 suptitle: Optional[str] = None,
                 max_cols: int = 8,
                 colorbar: bool = True,
                 dpi: int = 100) -> str:
    """PNG grid of key frames: overlays on top, the plain frames below.

    Args:
        path: output PNG.
        frames: uint8 RGB ``[T, H, W, 3]``.
        maps: ``[T, H, W]`` in [0, 1] (resized to the frames if needed).
        frame_indices: positions in ``0..T-1`` to show; default ``num_frames``
            evenly spaced ones.
        titles: one title per shown frame, replacing the default
            ``'frame {i}\\nmass {share:.3f}'`` (``share`` from
            :func:`temporal_importance` over all T frames).
        alpha, cmap, valid_mask: as in :func:`overlay_heatmap`.
        source_indices: ``[T]`` frame numbers in the original video used in the
            default titles (e.g. the clip's sampled frame indices); default
            ``0..T-1``.
        suptitle: optional figure title (e.g. ``'pred: jump (0.93)'``).
        max_cols: columns per row pair; more frames wrap onto further pairs.
        colorbar: add a colour bar for the map scale.

    Returns:
        ``path`` as a string.
    """
    f = as_rgb_frames(frames)
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got shape {tuple(f.shape)}')
    T, H, W = f.shape[:3]
    m = as_map(maps)
    if m.ndim != 3 or m.shape[0] != T:
        raise InputError(f'maps must be [T, H, W] with T={T}, got shape {tuple(m.shape)}')
    if frame_indices is None:
        idx = select_frames(T, num_frames)
    else:
        idx = np.asarray(to_numpy(frame_indices), dtype=int).reshape(-1)
        if idx.size == 0 or idx.min() < -T or idx.max() >= T:
            raise InputError(f'frame_indices must be in [0, {T}), got {idx.tolist()}')
        idx = idx % T
    if titles is not None and len(titles) != len(idx):
        raise InputError(f'got {len(titles)} titles for {len(idx)} frames')
    src = np.arange(T) if source_indices is None else np.asarray(to_numpy(source_indices)).reshape(-1)
    if src.shape[0] != T:
        raise InputError(f'source_indices must have {T} entries, got {src.shape[0]}')

    share = temporal_importance(m)
    mask = None
    if valid_mask is not None:
        vm = to_numpy(valid_mask)
        mask = vm[idx] if vm.ndim == 3 else vm
    over = overlay_heatmap(f[idx], m[idx], alpha=alpha, cmap=cmap, valid_mask=mask)

    n = len(idx)
    ncols = max(1, min(n, int(max_cols)))
    groups = math.ceil(n / ncols)
    cell_w = 1.9
    cell_h = cell_w * H / W
    fig = _new_figure((ncols * cell_w + (0.9 if colorbar else 0.2),
                       groups * (2 * cell_h + 0.55) + (0.4 if suptitle else 0.1)))
    axes = fig.subplots(2 * groups, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_axis_off()
    for k, t in enumerate(idx):
        g, c = divmod(k, ncols)
        a_top, a_bot = axes[2 * g, c], axes[2 * g + 1, c]
        a_top.imshow(over[k])
        a_bot.imshow(f[t])
        for a in (a_top, a_bot):
            a.set_axis_on()
            for s in a.spines.values():
                s.set_visible(False)
        title = titles[k] if titles is not None else f'frame {int(src[t])}\nmass {share[t]:.3f}'
        a_top.set_title(title, fontsize=9)
        if c == 0:
            a_top.set_ylabel('overlay', fontsize=9)
            a_bot.set_ylabel('frame', fontsize=9)
    if colorbar:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        cm = colormaps[cmap] if isinstance(cmap, str) else cmap
        cb = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cm), ax=axes[0::2, :].ravel().tolist(),
                          shrink=0.9, aspect=15, pad=0.01)
        cb.ax.tick_params(labelsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return _save_png(fig, path, dpi)


SeriesLike = Union[Any, Mapping[str, Any]]


def _as_series(importance: SeriesLike, series_labels: Optional[Sequence[str]]) -> Dict[str, np.ndarray]:
    if isinstance(importance, Mapping):
        items = [(str(k), np.asarray(to_numpy(v), np.float64).reshape(-1)) for k, v in importance.items()]
    else:
        arr = np.asarray(to_numpy(importance), np.float64)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise InputError(f'importance must be [T], [S, T] or a dict of [T], got shape {arr.shape}')
        items = [(f'series {i}' if len(arr) > 1 else 'importance', a) for i, a in enumerate(arr)]
    if not items or any(a.size == 0 for _, a in items):
        raise InputError('importance is empty')
    if series_labels is not None:
        if len(series_labels) != len(items):
            raise InputError(f'got {len(series_labels)} series_labels for {len(items)} series')
        items = [(str(lbl), a) for lbl, (_, a) in zip(series_labels, items)]
    return dict(items)


def plot_temporal_importance(path: PathLike,
                             importance: SeriesLike,
                             frame_indices: Optional[Union[Sequence[int], Mapping[str, Sequence[int]],
                                                           Sequence[Sequence[int]]]] = None,
                             series_labels: Optional[Sequence[str]] = None,
                             title: Optional[str] = None,
                             normalize: str = 'none',
                             ylabel: Optional[str] = None,
                             dpi: int = 100) -> str:
    """PNG line plot of map mass per frame, one line per series.

    Args:
        path: output PNG.
        importance: ``[T]``, ``[S, T]``, or a dict ``name -> [T_name]`` (e.g.
            SlowFast's slow and fast pathways, or several methods).
        frame_indices: x positions (original frame numbers): ``[T]`` shared by
            all series, or one ``[T_name]`` per series (dict by name, or a list
            in series order). Default ``0..T-1``; when series lengths differ,
            series ``i`` is spread over the longest one (``k * T_max / T_i``),
            which is how SlowFast's slow frames align with its fast frames.
        series_labels: legend names (replace the dict keys), in series order.
        title: plot title.
        normalize: ``'none'`` (plot as given), ``'sum'`` (each series sums to
            1) or ``'mean'`` (1 = uniform, comparable across series lengths).
        ylabel: y-axis label; a default follows ``normalize``.

    Returns:
        ``path`` as a string.
    """
    if normalize not in ('none', 'sum', 'mean'):
        raise InputError(f"normalize must be 'none', 'sum' or 'mean', got {normalize!r}")
    series = _as_series(importance, series_labels)
    names = list(series)
    t_max = max(len(v) for v in series.values())

    xs: Dict[str, np.ndarray] = {}
    if frame_indices is None:
        for k, v in series.items():
            xs[k] = np.arange(len(v)) * (t_max / len(v))
    elif isinstance(frame_indices, Mapping):
        keys = list(frame_indices)
        for i, k in enumerate(names):  # by (possibly relabelled) name, else by position
            src = frame_indices[k] if k in frame_indices else frame_indices[keys[i]]
            xs[k] = np.asarray(to_numpy(src), np.float64).reshape(-1)
    else:
        fi = list(frame_indices) if not hasattr(frame_indices, 'shape') else to_numpy(frame_indices)
        nested = len(fi) > 0 and np.ndim(to_numpy(fi[0])) == 1
        for i, k in enumerate(names):
            xs[k] = np.asarray(to_numpy(fi[i] if nested else fi), np.float64).reshape(-1)
    for k in names:
        if xs[k].shape[0] != series[k].shape[0]:
            raise InputError(f'series {k!r} has {series[k].shape[0]} values '
                             f'but {xs[k].shape[0]} frame indices')

    ys: Dict[str, np.ndarray] = {}
    for k, v in series.items():
        v = np.nan_to_num(v, nan=0.0)
        if normalize != 'none':
            s = v.sum() if normalize == 'sum' else v.mean()
            v = v / s if s != 0 else np.zeros_like(v)
        ys[k] = v

    fig = _new_figure((6.4, 3.6))
    ax = fig.add_subplot()
    for k in names:
        ax.plot(xs[k], ys[k], marker='o', markersize=4 if len(ys[k]) <= 64 else 0,
                linewidth=1.5, label=k)
    if normalize == 'mean':
        ax.axhline(1.0, color='0.5', linestyle='--', linewidth=1, label='uniform')
    elif len({len(v) for v in ys.values()}) == 1 and all(abs(v.sum() - 1) < 1e-6 for v in ys.values()):
        ax.axhline(1.0 / t_max, color='0.5', linestyle='--', linewidth=1, label='uniform')
    ax.set_xlabel('frame index')
    default_ylabel = {'none': 'share of map mass', 'sum': 'share of map mass',
                      'mean': 'map mass / mean'}[normalize]
    ax.set_ylabel(ylabel or default_ylabel)
    lo = min(float(v.min()) for v in ys.values())
    ax.set_ylim(bottom=min(0.0, lo * 1.05))
    ax.grid(True, alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1 or series_labels is not None:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save_png(fig, path, dpi)
