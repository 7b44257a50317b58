"""Long videos with per-frame labels served as windows: Cholec80 and CSVs.

``PhaseVideoDataset`` (any collection: ``NAME.mp4`` + ``NAME.csv``) and
``Cholec80Dataset`` (``videoNN.mp4``, ``videoNN-phase.txt``,
``videoNN-tool.txt``) are MMAction2 datasets: MMAction2's own
``tools/train.py`` / ``tools/test.py`` build them from a config
(``dict(type='mmxai.Cholec80Dataset', ...)``) and run their pipelines
unchanged. Each sample is one *window* of a video; its ``frame_inds`` are set
here, so the pipeline has no sampler: ``DecordInit``, ``DecordDecode``,
resize/crop, ``FormatShape``, ``PackActionInputs``.

The window rule (docs/surgical.md):

* frames are taken on a grid at ``sample_fps`` (frame ``round(k * fps /
  sample_fps)``, k = 0, 1, ...);
* a clip window is ``clip_len`` consecutive grid frames; a segment window
  (``num_segments=N``) spans ``clip_len`` grid steps cut into N equal
  segments and takes the middle frame of each (``SampleFrames``' test rule);
* one window ends on every ``stride``-th grid frame (default 1: every sampled
  frame gets a prediction, as the 1 fps evaluation of Cholec80 needs); the
  first windows of a video repeat frame 0 (``pad_start``) so that the first
  grid frames are served too;
* the label is the phase at the window's **last frame** (``label_at='last'``,
  online, the default) or at its **centre** (``'centre'``, offline).

Online is the default because phase recognition runs during the operation:
the prediction at time t may only use frames up to t, and it is scored
against the phase at t. A centre label would teach the model to name a phase
half a window before it can have seen it.
"""
import os
import os.path as osp
import re
from typing import List, Optional, Sequence, Union

import numpy as np
from mmaction.datasets import BaseActionDataset

from ..errors import ConfigError, InputError
from ..registry import DATASETS
from .phase_labels import (CHOLEC80_PHASES, frame_ground_truth,
                           read_ground_truth, read_tool_file)

__all__ = ['PhaseVideoDataset', 'Cholec80Dataset', 'parse_video_ids',
           'window_frames']


def parse_video_ids(videos) -> List[int]:
    """``'1-40'``, ``'41-48,50'``, ``(1, 40)`` as a range? no: a list or
    tuple of ints is taken as written; strings give inclusive ranges."""
    if isinstance(videos, str):
        out = []
        for part in videos.split(','):
            part = part.strip()
            m = re.fullmatch(r'(\d+)\s*-\s*(\d+)', part)
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                if b < a:
                    raise ConfigError(f'videos={videos!r}: range {part} ends '
                                      'before it starts')
                out.extend(range(a, b + 1))
            elif part.isdigit():
                out.append(int(part))
            else:
                raise ConfigError(f'videos={videos!r}: {part!r} is not a '
                                  'video number or a range like 1-40')
        return out
    return [int(v) for v in videos]


def window_frames(end_frame: int, fps: float, sample_fps: float,
                  clip_len: int, num_segments: Optional[int] = None
                  ) -> np.ndarray:
    """The frames of the window that ends at ``end_frame`` (a grid frame):
    ``clip_len`` grid frames (clip), or the middles of ``num_segments``
    segments of a span of ``clip_len`` grid steps; frames before 0 are 0."""
    step = fps / sample_fps
    if num_segments is None:
        k_end = end_frame / step
        ks = k_end - np.arange(clip_len - 1, -1, -1)
        inds = np.round(ks * step)
    else:
        span = clip_len * step
        start = end_frame + 1 - span
        seg = span / num_segments
        inds = np.floor(start + seg * (np.arange(num_segments) + 0.5))
        inds[-1] = min(inds[-1], end_frame)
    return np.maximum(inds, 0).astype(np.int64)


def _video_info(path: str):
    """``(num_frames, fps)`` of a video from its container (decord)."""
    import decord
    try:
        vr = decord.VideoReader(path, num_threads=1)
        return len(vr), float(vr.get_avg_fps())
    except Exception as e:  # decord raises its own DECORDError
        raise InputError(f'video {path} cannot be read ({str(e)[:80]}); '
                         'give an MP4 the decoder reads') from None


@DATASETS.register_module()
class PhaseVideoDataset(BaseActionDataset):
    """Long videos with one label per frame (a CSV per video), as windows.

    Files: ``<data_root>/<data_prefix['video']>/NAME<video_ext>`` and
    ``<data_root>/<data_prefix['label']>/NAME<label_suffix>``; the label file
    is read by :func:`mmxai.preflight.read_ground_truth` (``frame,label`` or
    ``time,label``, rows every frame or at change points; labels are class
    names or numbers).

    Args:
        ann_file: optional text file, one video NAME per line; without it
            (and without ``videos``) every video in the folder is used.
        videos: video NAMEs (or, for Cholec80, numbers / ``'1-40'``).
        classes: the class names (or ``metainfo=dict(classes=...)``).
        sample_fps: rate of the frame grid windows are made of.
        clip_len: grid frames per window (clip), or the window's span in grid
            steps with ``num_segments``.
        num_segments: serve TSN-style segment windows of this many frames.
        stride: grid steps between the ends of consecutive windows.
        label_at: ``'last'`` (online, default) or ``'centre'`` (offline).
        pad_start: serve the first grid frames too (their windows repeat
            frame 0); ``False`` starts at the first full window.
        tolerance_s: how far a label file's length may be from the video's.
    """

    METAINFO = dict(classes=None)
    label_suffix = '.csv'
    default_prefix = dict(video='', label='')

    def __init__(self, ann_file: str = '', pipeline: Sequence = (),
                 videos: Optional[Union[str, Sequence]] = None,
                 classes: Optional[Sequence[str]] = None,
                 data_prefix: Optional[dict] = None,
                 sample_fps: float = 1.0, clip_len: int = 8,
                 num_segments: Optional[int] = None, stride: int = 1,
                 label_at: str = 'last', pad_start: bool = True,
                 video_ext: str = '.mp4', tolerance_s: float = 1.0,
                 metainfo: Optional[dict] = None, **kwargs) -> None:
        if label_at not in ('last', 'centre', 'center'):
            raise ConfigError(f"label_at={label_at!r}: give 'last' (online) "
                              "or 'centre' (offline)")
        for name, v in (('clip_len', clip_len), ('stride', stride)):
            if int(v) < 1:
                raise ConfigError(f'{name}={v}: give 1 or more')
        if num_segments is not None and int(num_segments) < 1:
            raise ConfigError(f'num_segments={num_segments}: give 1 or more')
        if not sample_fps or sample_fps <= 0:
            raise ConfigError(f'sample_fps={sample_fps}: give a rate > 0')
        self.videos = videos
        self.sample_fps = float(sample_fps)
        self.clip_len = int(clip_len)
        self.num_segments = None if num_segments is None else int(
            num_segments)
        self.stride = int(stride)
        self.label_at = 'centre' if label_at == 'center' else label_at
        self.pad_start = pad_start
        self.video_ext = video_ext
        self.tolerance_s = tolerance_s
        metainfo = dict(metainfo or {})
        if classes is not None:
            metainfo['classes'] = tuple(classes)
        prefix = dict(self.default_prefix)
        prefix.update(data_prefix or {})
        prefix = {k: v for k, v in prefix.items() if v is not None}
        super().__init__(ann_file, pipeline=list(pipeline),
                         data_prefix=prefix, metainfo=metainfo, **kwargs)

    # ------------------------------------------------------------ videos
    def _classes(self) -> Sequence[str]:
        classes = self.metainfo.get('classes')
        if not classes:
            raise ConfigError(f'{type(self).__name__} needs the class names: '
                              "give classes=[...] (or metainfo=dict(classes="
                              "[...])) in the dataset config")
        return list(classes)

    def _names(self) -> List[str]:
        vdir = self.data_prefix.get('video') or self.data_root or '.'
        if self.videos is not None:
            return [str(v) for v in self.videos]
        if self.ann_file:
            if not osp.isfile(self.ann_file):
                raise InputError(f'video list {self.ann_file} not found (one '
                                 'video name per line)')
            with open(self.ann_file) as f:
                return [ln.split()[0] for ln in f if ln.strip()]
        if not osp.isdir(vdir):
            raise InputError(f'video folder {vdir} not found; set data_root '
                             "/ data_prefix['video']")
        names = sorted(osp.splitext(f)[0] for f in os.listdir(vdir)
                       if f.endswith(self.video_ext))
        if not names:
            raise InputError(f'no {self.video_ext} videos in {vdir}')
        return names

    def _label_path(self, name: str) -> str:
        return osp.join(self.data_prefix.get('label') or '',
                        name + self.label_suffix)

    def _label_fix(self, classes) -> str:
        return ("give the dataset's classes=[...] with every label of the "
                'files, or class numbers')

    def _frame_labels(self, name: str, path: str, num_frames: int,
                      fps: float, classes) -> np.ndarray:
        lab = self._label_path(name)
        if not osp.isfile(lab):
            raise InputError(f'label file {lab} not found for video {path}; '
                             f'each video needs NAME{self.label_suffix} in '
                             f"data_prefix['label']")
        rows = read_ground_truth(lab)
        return frame_ground_truth(rows, num_frames, fps, classes,
                                  len(classes), self.tolerance_s,
                                  fix=self._label_fix(classes))

    def _extras(self, name: str, num_frames: int, fps: float) -> dict:
        """Per-frame arrays beyond the labels (Cholec80: tools)."""
        return {}

    def _video_path(self, name: str) -> str:
        return osp.join(self.data_prefix.get('video') or '',
                        name + self.video_ext)

    # ------------------------------------------------------------ windows
    def load_data_list(self) -> List[dict]:
        classes = self._classes()
        data_list = []
        for name in self._names():
            path = self._video_path(name)
            if not osp.isfile(path):
                raise InputError(f'video {path} not found (listed video '
                                 f'{name!r}); check data_root / '
                                 "data_prefix['video'] and the video list")
            num_frames, fps = _video_info(path)
            if num_frames < 1 or fps <= 0:
                raise InputError(f'video {path} has no frames or no frame '
                                 'rate; re-encode it')
            labels = self._frame_labels(name, path, num_frames, fps, classes)
            extras = self._extras(name, num_frames, fps)
            data_list.extend(self._windows(name, path, num_frames, fps,
                                           labels, extras))
        return data_list

    def _windows(self, name, path, num_frames, fps, labels, extras):
        step = fps / self.sample_fps
        grid = np.round(np.arange(0, num_frames / step) * step).astype(
            np.int64)
        grid = grid[grid < num_frames]
        first = 0 if self.pad_start else self.clip_len - 1
        out = []
        for k in range(first, len(grid), self.stride):
            end = int(grid[k])
            inds = window_frames(end, fps, self.sample_fps, self.clip_len,
                                 self.num_segments)
            if self.label_at == 'last':
                at = end
            else:
                start = max(0, int(round(end + 1 - self.clip_len * step)))
                at = (start + end) // 2
            label = int(labels[at])
            if label < 0:
                continue  # before the first label of a change-point file
            info = dict(
                filename=path, video_id=name, frame_inds=inds,
                label=label, label_frame=at, label_time=at / fps,
                frame_labels=labels[inds].copy(), fps=fps,
                total_frames=num_frames, num_frames=num_frames,
                window_index=len(out),
                clip_len=1 if self.num_segments else self.clip_len,
                num_clips=self.num_segments or 1)
            for key, arr in extras.items():
                info[key] = arr[at].copy()
            out.append(info)
        return out


@DATASETS.register_module()
class Cholec80Dataset(PhaseVideoDataset):
    """Cholec80's layout: ``videos/videoNN.mp4``,
    ``phase_annotations/videoNN-phase.txt``, ``tool_annotations/videoNN-
    tool.txt`` (the folders of ``data_prefix``; set ``tool=None`` to read no
    tools, or all three to ``''`` for one flat folder).

    Each window also carries ``tools`` (``[7]`` uint8, the tool presence at
    its label frame). ``videos``: numbers or ranges (``'1-40'``); the usual
    split is 1-40 train, 41-48 val, 49-80 test (``configs/surgical/``).
    """

    METAINFO = dict(classes=CHOLEC80_PHASES)
    label_suffix = '-phase.txt'
    tool_suffix = '-tool.txt'
    default_prefix = dict(video='videos', label='phase_annotations',
                          tool='tool_annotations')

    def __init__(self, *args, videos=None, **kwargs) -> None:
        if videos is not None and not (
                isinstance(videos, (list, tuple))
                and all(isinstance(v, str) and v.startswith('video')
                        for v in videos)):
            videos = [f'video{n:02d}' for n in parse_video_ids(videos)]
        super().__init__(*args, videos=videos, **kwargs)

    def _label_fix(self, classes) -> str:
        return 'Cholec80 phase files name the 7 phases exactly as above'

    def _frame_labels(self, name, path, num_frames, fps, classes):
        lab = self._label_path(name)
        if not osp.isfile(lab):
            raise InputError(f'phase file {lab} not found for video {path}; '
                             f'Cholec80 layout: {name}{self.label_suffix} in '
                             "data_prefix['label']")
        rows = read_ground_truth(lab)
        if rows['format'] != 'cholec80' or not rows['dense'] or \
                rows['positions'][0] != 0:
            raise InputError(f'phase file {lab} is not Cholec80\'s format '
                             '("Frame<TAB>Phase" header, then one line per '
                             'frame from frame 0)')
        return frame_ground_truth(rows, num_frames, fps, classes,
                                  len(classes), self.tolerance_s,
                                  fix=self._label_fix(classes))

    def _extras(self, name, num_frames, fps):
        tdir = self.data_prefix.get('tool')
        if tdir is None:
            return {}
        return dict(tools=read_tool_file(
            osp.join(tdir, name + self.tool_suffix), num_frames, fps,
            self.tolerance_s))
