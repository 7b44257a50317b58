"""``SequenceTrack``: a phase-sequence explanation (which moments drive
the phase at time t, :func:`mmxai.apis.explain_phase_sequence`) as the
long-video outputs draw it: a row in ``timeline.png``, a strip in
``overlay.mp4`` and a row in ``index.html``.

Lookup rule (online, as the phase model): at video time ``tau`` the row
shown is the *last explained time at or before* ``tau`` (``index_at``);
before the first explained time nothing is shown.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ['SequenceTrack', 'VIEWER_MAX_ROWS', 'ZOOM_BELOW']

#: A context shorter than this share of the shown time span is drawn
#: stretched over the whole strip (the overlay's and the viewer's), with
#: the explained time at its right end: a 29 s context in a 20 minute video
#: would be 2 % of the width.
ZOOM_BELOW = 0.15

#: The viewer embeds at most this many explained times (evenly chosen
#: among them; every one is in ``sequence/importance.npz``).
VIEWER_MAX_ROWS = 400


@dataclass
class SequenceTrack:
    """Attributes:
        importance: ``{method: [N, T] float32}``: grid frame ``s``'s
            importance to the score at explained time ``i`` (0 outside the
            context ``context_start[i] .. times[i]``).
        times: ``[N]`` grid frame of each explained time (increasing).
        context_start: ``[N]`` first grid frame of each context.
        targets: ``[N]`` the explained class.
        grid_s: ``[T]`` the time of each grid frame (s).
        shown: the method drawn (None or not a method: the first one).
        class_names: one per class.
        folder: where its files are (``sequence/``), or None.
    """
    importance: Dict[str, np.ndarray]
    times: np.ndarray
    context_start: np.ndarray
    targets: np.ndarray
    grid_s: np.ndarray
    shown: Optional[str]
    class_names: List[str]
    folder: Optional[str] = None

    def __post_init__(self) -> None:
        if self.shown not in self.importance:
            self.shown = next(iter(self.importance))

    @classmethod
    def from_explanation(cls, res: Any, shown: Optional[str] = None,
                         folder: Optional[str] = None) -> 'SequenceTrack':
        """From a ``PhaseSequenceExplanation``."""
        order = np.argsort(np.asarray(res.times), kind='stable')
        imp = {m: np.asarray(v, np.float32)[order]
               for m, v in res.importance.items()}
        return cls(imp, np.asarray(res.times, np.int64)[order],
                   np.asarray(res.context_start, np.int64)[order],
                   np.asarray(res.targets, np.int64)[order],
                   np.asarray(res.frame_inds, np.float64) / res.fps,
                   shown, list(res.class_names), folder)

    @classmethod
    def load(cls, folder: str, fps: float,
             shown: Optional[str] = None) -> 'SequenceTrack':
        """From ``folder/importance.npz`` (``fps``: the video's rate)."""
        with np.load(osp.join(folder, 'importance.npz'),
                     allow_pickle=False) as z:
            imp = {k[len('importance_'):]: z[k] for k in z.files
                   if k.startswith('importance_')}
            return cls(imp, z['times'], z['context_start'], z['targets'],
                       z['frame_inds'] / float(fps), shown,
                       [str(c) for c in z['class_names']], folder)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def times_s(self) -> np.ndarray:
        """``[N]`` the explained times (s)."""
        return self.grid_s[self.times]

    @property
    def grid_dt(self) -> float:
        """Seconds between grid frames (1 with a single frame)."""
        g = self.grid_s
        return float(g[1] - g[0]) if len(g) > 1 else 1.0

    def index_at(self, tau: float) -> Optional[int]:
        """The last explained time at or before ``tau`` (s), or None."""
        k = int(np.searchsorted(self.times_s, tau + 1e-6, side='right'))
        return k - 1 if k > 0 else None

    def context(self, i: int, method: Optional[str] = None):
        """``(grid frames [n], values [n])`` of explained time ``i``."""
        a, t = int(self.context_start[i]), int(self.times[i])
        row = self.importance[method or self.shown][i]
        return np.arange(a, t + 1), row[a:t + 1]

    def top(self, i: int, k: int = 3, method: Optional[str] = None
            ) -> List[int]:
        """The ``k`` grid frames of highest importance to time ``i``."""
        s, v = self.context(i, method)
        return [int(x) for x in s[np.argsort(-v, kind='stable')[:k]]]

    def strip_values(self, i: int, col_times: np.ndarray, span: float):
        """Explained time ``i`` on a strip of ``len(col_times)`` columns
        (column times in s, the strip showing ``span`` s): returns
        ``(values [W] in [-1, 1], NaN outside the context; the explained
        time's column or None; zoomed)``. Values are scaled by the context's
        largest ``|value|``. When the context lasts less than
        :data:`ZOOM_BELOW` of ``span`` the columns cover the context alone,
        grid frame ``a + floor(c * n / W)`` in column ``c`` (zoomed)."""
        s, v = self.context(i)
        W = len(col_times)
        top = float(np.abs(v).max()) if v.size else 0.0
        v = v / top if top > 0 else v
        g, dt = self.grid_s, self.grid_dt
        if len(s) * dt < ZOOM_BELOW * span and W >= len(s):
            idx = (np.arange(W) * len(s)) // W
            return v[idx].astype(np.float32), W - 1, True
        vals = np.full(W, np.nan, np.float32)
        cols = np.clip(np.round((np.asarray(col_times) - g[0]) / dt), 0,
                       len(g) - 1).astype(int)
        inside = (cols >= s[0]) & (cols <= s[-1])
        vals[inside] = v[cols[inside] - s[0]]
        at = np.flatnonzero(cols == s[-1])
        return vals, (int(at[-1]) if len(at) else None), False

    def label(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) \
            else str(c)

    def viewer_data(self, max_rows: int = VIEWER_MAX_ROWS
                    ) -> Dict[str, Any]:
        """The viewer's JSON: ``method``, ``methods``, ``grid_dt`` (s
        between grid frames; grid frame k at ``k * grid_dt``), ``rows``:
        ``[time_s, target, context_start, scale, [q ...]]`` (and
        ``zoom_below``: :data:`ZOOM_BELOW`) with the
        context's values ``q * scale / 100`` (integers -100..100, ``scale``
        = the row's largest ``|value|``), at most ``max_rows`` rows."""
        n = len(self)
        pick = np.unique(np.linspace(0, n - 1, min(n, max_rows)).round()
                         .astype(int)) if n else np.zeros(0, int)
        rows = []
        for i in pick:
            s, v = self.context(int(i))
            scale = float(np.abs(v).max()) if v.size else 0.0
            q = np.round(100 * v / scale).astype(int) if scale > 0 else \
                np.zeros(len(v), int)
            rows.append([round(float(self.times_s[i]), 3),
                         int(self.targets[i]), int(s[0]) if len(s) else 0,
                         float(f'{scale:.4g}'), q.tolist()])
        return dict(method=self.shown, methods=list(self.importance),
                    grid_dt=self.grid_dt, rows=rows, explained=n,
                    zoom_below=ZOOM_BELOW)

    def matrix(self, method: str, row_times: np.ndarray,
               max_cols: int = 1500):
        """``[len(row_times), C]`` float in [-1, 1] for the timeline: row
        ``r`` is the explained time shown at ``row_times[r]``
        (:meth:`index_at`; NaN before the first), each scaled by its largest
        ``|value|``; columns are the grid frames, averaged in bins when
        there are more than ``max_cols``. Returns ``(image, col_edges_s)``.
        """
        T = len(self.grid_s)
        bins = max(1, int(np.ceil(T / max_cols)))
        C = int(np.ceil(T / bins))
        img = np.full((len(row_times), C), np.nan, np.float32)
        mat = self.importance[method]
        for r, tau in enumerate(row_times):
            i = self.index_at(float(tau))
            if i is None:
                continue
            row = mat[i].astype(np.float64)
            top = np.abs(row).max()
            row = row / top if top > 0 else row
            pad = np.zeros(C * bins)
            pad[:T] = row
            img[r] = pad.reshape(C, bins).mean(1)
        dt = self.grid_dt
        edges = self.grid_s[0] - dt / 2 + np.arange(C + 1) * bins * dt
        return img, edges
