"""``FrameTrack``: one sequence of frames with its map, as the writer draws
it (overlay video/GIF, montage, temporal plot)."""
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Union

import numpy as np

__all__ = ['FrameTrack', 'map_mass', 'view_tracks']


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
    maps = exp.maps[0].detach().float().cpu().numpy()  # [V, T, H, W]
    importance = exp.temporal_importance()[0].cpu().numpy()  # [V, T]
    tracks = []
    for v in views:
        view_frames = frames[v] if frames is not None else \
            np.zeros(maps[v].shape + (3, ), np.uint8)
        tracks.append(FrameTrack(
            stem=f'view{v}{suffix}', frames=view_frames, maps=maps[v],
            lines=list(lines), title=' | '.join(lines),
            plot_title=plot_title.format(v=v), importance=importance[v],
            fps=fps))
    return tracks
