"""``FrameTrack``: one sequence of frames with its map, as the writer draws
it (overlay video/GIF, montage, temporal plot).

Colour scale (every output): a map is *signed* when its raw map
(``Explanation.raw_maps``) has negative values
(:func:`~mmxai.visualization.is_signed`; e.g. Integrated Gradients,
gradients without ``abs``, SmoothGrad, occlusion, LIME/SHAP). Signed maps are
drawn as ``raw / P99(|raw|)`` per view, clipped to [-1, 1], on a diverging colour map
centred at 0 (``'RdBu_r'``: 0 is the neutral middle colour); their plot
shows the positive and the negative evidence per frame. Non-negative maps
are drawn as ``Explanation.maps`` (min-max per view, in [0, 1]) on ``'jet'``.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['FrameTrack', 'map_mass', 'view_tracks', 'display_maps',
           'colour_scale', 'frame_series', 'combine_over_frames',
           'SIGNED_COLORS']

#: Plot colours of a signed map's two series.
SIGNED_COLORS = {'positive': 'tab:red', 'negative': 'tab:blue'}


@dataclass
class FrameTrack:
    """Frames and maps of one view (or of the original video).

    Attributes:
        stem: name in the layout (``'view0'``, ``'view0_top2'``, ``'overlay'``).
        frames: uint8 RGB ``[T, H, W, 3]``.
        maps: float ``[T, H, W]`` in [0, 1], on ``frames``' grid.
        lines: label-panel text: one list of lines, or T lists (per frame).
        valid: bool ``[T, H, W]``: where ``maps`` are defined (None: all).
        frame_indices: original frame numbers of the T frames (montage
            titles, plot x axis), or None.
        importance: what the plot shows: ``[T]``, ``[S, T]`` or a dict of
            series (default: the maps' mass per frame).
        importance_x: the plot's x positions (see
            :func:`~mmxai.visualization.plot_temporal_importance`).
        title: montage title; plot_title: plot title (default ``title``).
        fps: frame rate of the overlay video and GIF.
        signed: ``maps`` are signed, in [-1, 1] (a diverging colour map
            centred at 0); else in [0, 1].
        plot_colors: plot colours by series name (None: the cycle).
    """
    stem: str
    frames: np.ndarray
    maps: np.ndarray
    lines: Union[Sequence[str], Sequence[Sequence[str]]] = ()
    valid: Optional[np.ndarray] = None
    frame_indices: Optional[np.ndarray] = None
    importance: Any = None
    importance_x: Any = None
    title: Optional[str] = None
    plot_title: Optional[str] = None
    fps: float = 4.0
    signed: bool = False
    plot_colors: Optional[Dict[str, Any]] = None

    def plot_series(self) -> Any:
        if self.importance is not None:
            return self.importance
        return map_mass(self.maps, self.valid)


def map_mass(maps: np.ndarray, valid: Optional[np.ndarray] = None
             ) -> np.ndarray:
    """Share of the (positive, valid) map mass in each frame: ``[T]``,
    ``m_t = sum_hw max(M_thw, 0) / sum_thw max(M_thw, 0)``
    (:func:`~mmxai.visualization.temporal_importance` of the valid part)."""
    from ..visualization import temporal_importance
    return temporal_importance(maps if valid is None else
                               np.where(valid, maps, 0))


def display_maps(exp, sample: int = 0) -> Tuple[np.ndarray, bool]:
    """The maps of sample ``sample`` of ``exp`` as drawn: ``(maps [V, T, H,
    W] float32, signed)`` (the colour-scale rule of the module docstring)."""
    from ..visualization import is_signed, signed_scale
    raw = exp.raw_maps[sample].detach().float().cpu().numpy()
    if raw.shape == tuple(exp.maps.shape[1:]) and is_signed(raw):
        return signed_scale(raw, axis=tuple(range(1, raw.ndim))), True
    return exp.maps[sample].detach().float().cpu().numpy(), False


def colour_scale(signed: bool, cmap: str = 'jet',
                 signed_cmap: str = 'RdBu_r') -> str:
    """The colour scale in words, for the JSON records."""
    if signed:
        return (f'diverging ({signed_cmap}), centred at 0, '
                '+-1 = the 99th percentile of |raw map| per view (clipped), '
                'overlay weight |map| (signed map)')
    return f'sequential ({cmap}), min-max per view: 0 = min, 1 = max'


def frame_series(maps: np.ndarray, signed: bool) -> Dict[str, np.ndarray]:
    """Evidence per frame of ``maps [..., T, H, W]``, unnormalised:
    ``{'mass': sum_hw max(M, 0)}``, or for signed maps ``{'positive':
    sum_hw max(M, 0), 'negative': sum_hw max(-M, 0)}``."""
    m = np.asarray(maps, np.float64)
    pos = np.clip(m, 0, None).sum(axis=(-2, -1))
    if not signed:
        return {'mass': pos}
    return {'positive': pos, 'negative': np.clip(-m, 0, None).sum(
        axis=(-2, -1))}


def combine_over_frames(values: np.ndarray, frame_inds: np.ndarray,
                        grid: Optional[np.ndarray] = None
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """One curve over original frames from per-view values ``[V, T]`` at
    original frame numbers ``frame_inds [V, T]``.

    A view covers the frames from its first to its last; between its own
    frames its value is interpolated linearly. Each frame of ``grid``
    (default: every frame some view saw, sorted) gets the mean over the
    views covering it, so overlapping clips (e.g. interleaved even/odd
    frames) give one curve instead of a zig-zag. Returns ``(grid [N],
    curve [N])``.
    """
    values = np.asarray(values, np.float64).reshape(len(frame_inds), -1)
    frame_inds = np.asarray(frame_inds).reshape(values.shape)
    if grid is None:
        grid = np.unique(frame_inds)
    grid = np.asarray(grid)
    acc = np.zeros(len(grid))
    cnt = np.zeros(len(grid))
    for vals, inds in zip(values, frame_inds):
        xs, inv = np.unique(inds, return_inverse=True)
        ys = np.bincount(inv.reshape(-1), weights=vals) / np.bincount(
            inv.reshape(-1))  # a frame seen twice by one view: its mean
        cover = (grid >= xs[0]) & (grid <= xs[-1])
        acc[cover] += np.interp(grid[cover], xs, ys)
        cnt[cover] += 1
    return grid, np.divide(acc, cnt, out=np.zeros_like(acc), where=cnt > 0)


def view_tracks(exp, frames: Optional[np.ndarray], views: Sequence[int],
                suffix: str = '', lines: Sequence[str] = (),
                plot_title: str = '{v}', fps: float = 4.0
                ) -> List[FrameTrack]:
    """One track per view of sample 0 of ``exp`` on the frames the model
    saw.

    Args:
        exp: an ``Explanation`` (maps ``[1, V, T, H, W]``).
        frames: uint8 ``[V, T, H, W, 3]`` (None: black frames, for plots).
        views: the views to draw; stems are ``view<v><suffix>``.
        lines: the label panel (also the montage title, joined by ``|``).
        plot_title: format string of ``v`` for the plot title.
    """
    maps, signed = display_maps(exp)  # [V, T, H, W]
    tracks = []
    for v in views:
        view_frames = frames[v] if frames is not None else \
            np.zeros(maps[v].shape + (3, ), np.uint8)
        series = frame_series(maps[v], signed)
        total = sum(x.sum() for x in series.values())
        importance = {k: (x / total if total > 0 else np.zeros_like(x))
                      for k, x in series.items()}
        if 'negative' in importance:
            importance['negative'] = -importance['negative']
        else:
            importance = importance['mass']
        tracks.append(FrameTrack(
            stem=f'view{v}{suffix}', frames=view_frames, maps=maps[v],
            lines=list(lines), title=' | '.join(lines),
            plot_title=plot_title.format(v=v), importance=importance,
            fps=fps, signed=signed,
            plot_colors=SIGNED_COLORS if signed else None))
    return tracks
