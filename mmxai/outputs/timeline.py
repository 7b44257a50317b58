"""A long video's timeline: per-window records and the run-level files.

Layout of a long-video run (:data:`~mmxai.outputs.LONG_VIDEO_LAYOUT`)::

    out_dir/
      run.json             the run's settings (video, method, window plan)
      windows/000123.json  one record per window (written by OutputWriter)
      maps/000123.npz      that window's maps at reduced resolution
      timeline.csv/.json   one row per window
      timeline.png         class ribbon, ground truth, importance
      overlay.mp4          the whole video with heat maps and a cursor
      plain.mp4            the same without heat maps (the viewer's "off")
      index.html           the self-contained viewer

Maps format: one compressed ``.npz`` per window (``maps`` float16 ``[T, h,
w]`` on the original frame's grid at most ``map_size`` px, ``valid`` bool
``[h, w]``, ``frame_inds`` ``[T]``, ``probs`` float16 ``[K]``). Chosen
because a window is the unit of resume: each chunk is written atomically
with its record (a SIGKILL leaves whole chunks only, where one HDF5 file
being appended to can be left corrupt), readers open only the windows they
need (lazy, :meth:`Timeline.maps`), zlib compresses smooth maps well and
it needs nothing beyond numpy (zarr or h5py would be new dependencies).
"""
import csv
import io
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..fileio import atomic_path, read_json, write_json
from .layout import LONG_VIDEO_LAYOUT
from .records import class_label

__all__ = ['WindowRecord', 'Timeline', 'TIMELINE_FILES', 'window_rows',
           'write_timeline_csv', 'write_timeline_json', 'read_window_maps']

#: Run-level files of a long-video run, relative to its folder.
TIMELINE_FILES = dict(run='run.json', csv='timeline.csv',
                      json='timeline.json', png='timeline.png',
                      video='overlay.mp4', plain='plain.mp4',
                      html='index.html', lock='.mmxai-long.lock')


@dataclass
class WindowRecord:
    """One window of a long video: where it lies and what the model says.

    Frames ``start_frame .. end_frame`` (inclusive) are the window's span;
    ``frame_inds`` the frames the model saw. ``status`` is ``'ok'`` or
    ``'failed'`` (``error`` says why: e.g. corrupt frames).
    ``label_frame``: the frame the prediction refers to when it is not the
    span's centre (online models, labelled at their last frame).
    """
    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    frame_inds: List[int] = field(default_factory=list)
    status: str = 'ok'
    error: Optional[str] = None
    topk: List[Tuple[int, float]] = field(default_factory=list)
    pred: int = -1
    pred_prob: float = float('nan')
    target: int = -1
    target_prob: float = float('nan')
    target_score: float = float('nan')
    mass: List[float] = field(default_factory=list)
    evidence: float = 0.0
    gt: Optional[int] = None
    label_frame: Optional[int] = None

    @property
    def at_frame(self) -> float:
        """The frame the window's prediction is about: ``label_frame``
        (an online model's last seen frame) or, when unset, the span's
        centre (offline)."""
        if self.label_frame is not None:
            return float(self.label_frame)
        return (self.start_frame + self.end_frame) / 2

    @property
    def at_s(self) -> float:
        """:attr:`at_frame` in seconds (the centre of that frame's time
        for a label frame, as ``start_s``/``end_s`` bound frames)."""
        if self.label_frame is None:
            return self.centre_s
        n = self.end_frame + 1 - self.start_frame
        per = (self.end_s - self.start_s) / max(1, n)
        return self.start_s + (self.label_frame - self.start_frame + 0.5) * per

    @property
    def ok(self) -> bool:
        return self.status == 'ok'

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d['topk'] = [[int(c), float(p)] for c, p in self.topk]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'WindowRecord':
        keys = cls.__dataclass_fields__
        rec = cls(**{k: v for k, v in d.items() if k in keys})
        rec.topk = [(int(c), float(p)) for c, p in rec.topk]
        return rec


def read_window_maps(root: str, index: int) -> Dict[str, np.ndarray]:
    """The arrays of window ``index`` (``maps``, ``valid``, ``frame_inds``,
    ``probs``), read from its own chunk only."""
    path = osp.join(root, LONG_VIDEO_LAYOUT.path('npz', index))
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Timeline:
    """What ``explain_long_video`` returns: one :class:`WindowRecord` per
    window (iterate over it), with the video's facts and the files.

    Attributes:
        windows: the records, in time order.
        fps, num_frames: the source video's.
        class_names: one per class (or None).
        out_dir: where the files are (None: nothing written; maps are then
            in :attr:`memory_maps` when kept).
        files: ``{name: path}`` of the run-level files.
        gt: per-frame ground-truth class (``-1`` unknown), or None.
        accuracy: frame accuracy against ``gt`` (None without it).
        settings: the run's settings (``run.json``).
    """
    windows: List[WindowRecord]
    fps: float
    num_frames: int
    class_names: Optional[List[str]] = None
    out_dir: Optional[str] = None
    files: Dict[str, str] = field(default_factory=dict)
    gt: Optional[np.ndarray] = None
    accuracy: Optional[float] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    memory_maps: Dict[int, Dict[str, np.ndarray]] = field(
        default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[WindowRecord]:
        return iter(self.windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> WindowRecord:
        return self.windows[i]

    @property
    def failed(self) -> List[WindowRecord]:
        return [w for w in self.windows if not w.ok]

    def label(self, c: int) -> str:
        return class_label(c, self.class_names) if c >= 0 else ''

    def maps(self, i: int) -> Dict[str, np.ndarray]:
        """Window ``i``'s maps, read lazily from its chunk on disk."""
        if i in self.memory_maps:
            return self.memory_maps[i]
        if self.out_dir is None:
            raise KeyError(f'window {i} has no maps (nothing was written; '
                           'give out_dir or keep_maps=True)')
        return read_window_maps(self.out_dir, self.windows[i].index)

    def frame_predictions(self, frames: Optional[np.ndarray] = None
                          ) -> np.ndarray:
        """Predicted class of each frame (``-1`` where no successful window
        covers it): that of the covering window whose :attr:`at_frame`
        (its label frame; the centre for offline models) is nearest."""
        n = self.num_frames
        frames = np.arange(n) if frames is None else np.asarray(frames)
        out = np.full(len(frames), -1, np.int64)
        best = np.full(len(frames), np.inf)
        for w in self.windows:
            if not w.ok:
                continue
            lo = np.searchsorted(frames, w.start_frame)
            hi = np.searchsorted(frames, w.end_frame, side='right')
            if hi <= lo:
                continue
            d = np.abs(frames[lo:hi] - w.at_frame)
            better = d < best[lo:hi]
            out[lo:hi][better] = w.pred
            best[lo:hi][better] = d[better]
        return out

    def frame_accuracy(self) -> Optional[float]:
        """Share of frames (covered, with a ground-truth class) whose
        predicted class is the ground truth's."""
        if self.gt is None:
            return None
        pred = self.frame_predictions()
        keep = (pred >= 0) & (self.gt[:len(pred)] >= 0)
        if not keep.any():
            return None
        return float((pred[keep] == self.gt[:len(pred)][keep]).mean())

    @classmethod
    def load(cls, out_dir: str) -> 'Timeline':
        """The timeline of a finished run in ``out_dir``."""
        data = read_json(osp.join(out_dir, TIMELINE_FILES['json']))
        if data is None:
            from ..errors import InputError
            raise InputError(f'no timeline in {out_dir} (timeline.json is '
                             'missing or unreadable): run it first')
        tl = cls([WindowRecord.from_dict(w) for w in data['windows']],
                 data['fps'], data['num_frames'], data.get('class_names'),
                 out_dir, data.get('files', {}), None, data.get('accuracy'),
                 data.get('settings', {}))
        return tl


CSV_COLUMNS = ['index', 'status', 'start_frame', 'end_frame', 'start_s',
               'end_s', 'label_frame', 'pred', 'pred_label', 'pred_prob', 'target',
               'target_label', 'target_prob', 'target_score', 'evidence',
               'gt_label', 'topk', 'mass', 'error']


def window_rows(tl: Timeline) -> List[Dict[str, Any]]:
    """One row per window (the CSV's columns)."""
    rows = []
    for w in tl.windows:
        rows.append(dict(
            index=w.index, status=w.status, start_frame=w.start_frame,
            end_frame=w.end_frame, start_s=round(w.start_s, 3),
            end_s=round(w.end_s, 3), label_frame=round(w.at_frame, 1),
            pred=w.pred, pred_label=tl.label(w.pred),
            pred_prob=_r(w.pred_prob), target=w.target,
            target_label=tl.label(w.target), target_prob=_r(w.target_prob),
            target_score=_r(w.target_score), evidence=_r(w.evidence, 6),
            gt_label='' if w.gt is None else tl.label(w.gt),
            topk=';'.join(f'{tl.label(c)}:{p:.4f}' for c, p in w.topk),
            mass=';'.join(f'{m:.4f}' for m in w.mass),
            error=w.error or ''))
    return rows


def _r(x: float, nd: int = 5):
    return '' if x is None or not np.isfinite(x) else round(float(x), nd)


def write_timeline_csv(path: str, tl: Timeline) -> str:
    """``timeline.csv`` (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(window_rows(tl))
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            f.write(buf.getvalue())
    return path


def write_timeline_json(path: str, tl: Timeline) -> str:
    """``timeline.json`` (atomic): the settings, the video's facts, the
    accuracy and every window's record."""
    return write_json(path, dict(
        fps=tl.fps, num_frames=tl.num_frames, class_names=tl.class_names,
        accuracy=tl.accuracy, settings=tl.settings,
        files={k: osp.basename(v) for k, v in tl.files.items()},
        windows=[w.to_dict() for w in tl.windows]), indent=1)


def class_names_or_numbers(names: Optional[Sequence[str]],
                           k: int) -> List[str]:
    return [class_label(c, names) for c in range(k)]
