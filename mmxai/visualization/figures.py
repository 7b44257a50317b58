"""Static figures: key-frame montages and temporal-importance plots (PNG).

Matplotlib is used through ``Figure`` + ``FigureCanvasAgg`` only, so the
user's pyplot backend and open figures are never touched.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from mmxai.errors import InputError

from .colormap import CmapLike, as_map, as_rgb_frames, resolve_scale, to_numpy
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


def signed_temporal_importance(maps: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Positive and negative evidence per frame of a signed map.

    Returns:
        ``(pos [T], neg [T])`` float64: ``sum_hw max(M, 0)`` and
        ``sum_hw max(-M, 0)`` per frame, both divided by ``sum_thw |M|`` (so
        ``pos.sum() + neg.sum() == 1``; zeros when the map is all 0).
    """
    m = as_map(maps).astype(np.float64)
    if m.ndim < 3:
        raise InputError(f'maps must be [T, H, W], got shape {tuple(m.shape)}')
    pos = np.clip(m, 0.0, None).sum(axis=(-2, -1))
    neg = np.clip(-m, 0.0, None).sum(axis=(-2, -1))
    total = (pos + neg).sum(axis=-1, keepdims=True)
    return (np.divide(pos, total, out=np.zeros_like(pos), where=total > 0),
            np.divide(neg, total, out=np.zeros_like(neg), where=total > 0))


def _text_width_px(fig, text: str, fontsize: float) -> float:
    from matplotlib.font_manager import FontProperties
    renderer = fig.canvas.get_renderer()
    w, _, _ = renderer.get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False)
    return float(w)


def wrap_title(fig, text: str, fontsize: float, max_lines: int = 4,
               margin: float = 0.96) -> str:
    """``text`` wrapped to fit ``fig``'s width (``margin`` of it), breaking
    first at ``' | '``, then between words (long words are cut); at most
    ``max_lines`` lines, the last one ending in an ellipsis if cut."""
    import textwrap
    limit = fig.get_figwidth() * fig.dpi * margin
    fits = (lambda ln: _text_width_px(fig, ln, fontsize) <= limit)
    lines: list = []
    for part in str(text).split(' | '):
        if fits(part):
            lines.append(part)
            continue
        width = max(1, len(part))
        while width > 1:  # widest wrap whose every line fits
            width = max(1, int(width * 0.9))
            wrapped = textwrap.wrap(part, width, break_long_words=True)
            if all(fits(ln) for ln in wrapped):
                break
        lines.extend(wrapped)
    if len(lines) > max_lines:
        last = ' '.join(lines[max_lines - 1:])
        while last and not fits(last + '\u2026'):
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last.rstrip() + '\u2026']
    return '\n'.join(lines)


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
                 cmap: Optional[CmapLike] = None,
                 valid_mask: Optional[Any] = None,
                 source_indices: Optional[Sequence[int]] = None,
                 suptitle: Optional[str] = None,
                 max_cols: int = 8,
                 colorbar: bool = True,
                 dpi: int = 100,
                 signed: Optional[bool] = None) -> str:
    """PNG grid of key frames: overlays on top, the plain frames below.

    Args:
        path: output PNG.
        frames: uint8 RGB ``[T, H, W, 3]``.
        maps: ``[T, H, W]`` in [0, 1], or signed in [-1, 1] (resized to the
            frames if needed).
        frame_indices: positions in ``0..T-1`` to show; default ``num_frames``
            evenly spaced ones.
        titles: one title per shown frame, replacing the default
            ``'frame {i}\\nmass {share:.3f}'`` (``share`` from
            :func:`temporal_importance` over all T frames; signed maps:
            ``'+{pos:.3f} -{neg:.3f}'`` from :func:`signed_temporal_importance`).
        alpha, cmap, valid_mask, signed: as in :func:`overlay_heatmap`
            (signed maps: a diverging colour bar from -1 to 1, i.e.
            ``-P99(|map|)`` to ``+P99(|map|)``, clipped).
        source_indices: ``[T]`` frame numbers in the original video used in the
            default titles (e.g. the clip's sampled frame indices); default
            ``0..T-1``.
        suptitle: optional figure title (e.g. ``'pred: jump (0.93)'``),
            wrapped to the figure's width (see :func:`wrap_title`).
        max_cols: columns per row pair; more frames wrap onto further pairs.
        colorbar: add a colour bar for the map scale.

    Returns:
        ``path`` as a string.
    """
    f = as_rgb_frames(frames)
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got shape {tuple(f.shape)}')
    T, H, W = f.shape[:3]
    m, signed, cmap = resolve_scale(maps, signed, cmap)
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

    if signed:
        pos, neg = signed_temporal_importance(m)
        mass = [f'+{p:.3f} -{q:.3f}' for p, q in zip(pos, neg)]
    else:
        mass = [f'mass {x:.3f}' for x in temporal_importance(m)]
    mask = None
    if valid_mask is not None:
        vm = to_numpy(valid_mask)
        mask = vm[idx] if vm.ndim == 3 else vm
    over = overlay_heatmap(f[idx], m[idx], alpha=alpha, cmap=cmap, valid_mask=mask,
                           signed=signed)

    n = len(idx)
    ncols = max(1, min(n, int(max_cols)))
    groups = math.ceil(n / ncols)
    cell_w = 1.9
    cell_h = cell_w * H / W
    width = ncols * cell_w + (0.9 if colorbar else 0.2)
    fig = _new_figure((width, 1.0))
    fig.set_dpi(dpi)
    title = wrap_title(fig, suptitle, 11) if suptitle else None
    title_h = 0.1 if not title else 0.22 + 0.2 * (title.count('\n') + 1)
    fig.set_size_inches(width, groups * (2 * cell_h + 0.55) + title_h)
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
        label = titles[k] if titles is not None else f'frame {int(src[t])}\n{mass[t]}'
        a_top.set_title(label, fontsize=9)
        if c == 0:
            a_top.set_ylabel('overlay', fontsize=9)
            a_bot.set_ylabel('frame', fontsize=9)
    if colorbar:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        cm = colormaps[cmap] if isinstance(cmap, str) else cmap
        norm = Normalize(-1.0, 1.0) if signed else Normalize(0.0, 1.0)
        cb = fig.colorbar(ScalarMappable(norm, cm), ax=axes[0::2, :].ravel().tolist(),
                          shrink=0.9, aspect=15, pad=0.01)
        if signed:
            cb.set_ticks([-1.0, 0.0, 1.0], labels=['-P99', '0', '+P99'])
        cb.ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
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
                             dpi: int = 100,
                             colors: Optional[Mapping[str, Any]] = None) -> str:
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
        title: plot title, wrapped to the figure's width (:func:`wrap_title`).
        normalize: ``'none'`` (plot as given), ``'sum'`` (each series sums to
            1) or ``'mean'`` (1 = uniform, comparable across series lengths).
        ylabel: y-axis label; a default follows ``normalize``.
        colors: matplotlib colours by series name (default: the cycle).

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
                linewidth=1.5, label=k, color=(colors or {}).get(k))
    if normalize == 'mean':
        ax.axhline(1.0, color='0.5', linestyle='--', linewidth=1, label='uniform')
    elif len({len(v) for v in ys.values()}) == 1 and all(abs(v.sum() - 1) < 1e-6 for v in ys.values()):
        ax.axhline(1.0 / t_max, color='0.5', linestyle='--', linewidth=1, label='uniform')
    ax.set_xlabel('frame index')
    default_ylabel = {'none': 'share of map mass', 'sum': 'share of map mass',
                      'mean': 'map mass / mean'}[normalize]
    lo = min(float(v.min()) for v in ys.values())
    if lo < 0 and normalize != 'mean':  # signed: negative evidence below 0
        default_ylabel = 'share of |map| mass'
    ax.set_ylabel(ylabel or default_ylabel)
    ax.set_ylim(bottom=min(0.0, lo * 1.05))
    if lo < 0:
        ax.axhline(0.0, color='0.3', linewidth=0.8)
    ax.grid(True, alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1 or series_labels is not None:
        ax.legend(fontsize=8)
    if title:
        fig.set_dpi(dpi)
        ax.set_title(wrap_title(fig, title, 12, max_lines=3), fontsize=12)
    return _save_png(fig, path, dpi)
