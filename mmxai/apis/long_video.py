"""``explain_long_video``: a whole video, window by window, in flat memory.

Windows (the rule; also in ``docs/long_video.md``). Each window is one
model input built from the config's own test pipeline parameters:

* **clip models** (3D, SlowFast, transformers: the sampler's ``clip_len``
  > 1): a window spans ``clip_len x frame_interval`` frames and the model
  sees ``clip_len`` frames ``frame_interval`` apart from its first frame
  (what ``SampleFrames`` takes for one clip);
* **segment models** (TSN, TSM: ``clip_len`` 1, ``num_clips`` = N
  segments; or ``UniformSample``): a window spans ``window_span`` (default
  N seconds: one segment per second), cut into N equal segments, and the
  model sees the middle frame of each (``SampleFrames``' test-mode rule);
* windows start at ``start``, every ``stride`` (default: the span, so each
  frame is in one window) while they fit before ``end``; where the last
  one ends before ``end``, one more window ends at ``end`` exactly;
* one view per window by default (one clip, the multi-crop of the test
  pipeline replaced by its centre crop); ``views='crops'`` keeps the
  pipeline's crops (ThreeCrop, TenCrop);
* everything after the pipeline's decode step (resize, crop, format,
  pack) is the config's own;
* a window's prediction is about its centre (offline models) or, for an
  online model, about the last frame it sees (``label_at='last'``: the
  config's dataset says ``label_at='last'``, as mmxai's phase datasets do,
  or the head is the causal ``CausalMSTCNHead``); each frame takes the
  prediction of the covering window whose label frame is nearest, in the
  frame accuracy, the ribbons, the overlay and the viewer.

Frames are decoded with decord in window order, one batch of windows at a
time (``batch_size`` windows go through the model together), so memory
holds a batch's frames only. Each window's record and maps are written
atomically by the one :class:`~mmxai.outputs.OutputWriter` as soon as its
batch is done; a re-run into the same folder skips finished windows (a
lock file refuses a second run into the folder while one is going on).
"""
import contextlib
import os
import os.path as osp
import time
from typing import (Any, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import numpy as np
from torch import nn

from ..datasets.phase_labels import frame_ground_truth
from ..errors import ConfigError, InputError, OutputError, TargetError
from ..explainers import BaseExplainer, build_explainer
from ..fileio import atomic_path, check_writable, clean_stale, json_safe, \
    read_json, write_json
from ..outputs import (LONG_VIDEO_LAYOUT, OutputWriter, RankOutputs,
                       TIMELINE_FILES, Timeline, WindowRecord)
from ..outputs.sequence_track import SequenceTrack
from ..outputs.timeline import write_timeline_csv, write_timeline_json
from ..outputs.track import display_maps, frame_series
from ..preflight import (check_video_file, parse_time_spec,
                         read_ground_truth, to_frames)
from ..utils.native_stderr import captured_native_stderr, sanitize_text
from ..utils.status_line import StatusLine
from ..version import __version__
from .frame_mapping import maps_to_original
from .class_names import given_class_names, matched_class_names
from .video_input import (_GeometryTracker, _shape_state, check_frame_size,
                          probe_frame_size, test_pipeline_cfg, _limit,
                          FRAME_PIXELS_ENV, MAX_FRAME_PIXELS)

__all__ = ['explain_long_video', 'WindowPlan', 'plan_windows',
           'VideoStream', 'frame_ground_truth']

_SAMPLERS = ('SampleFrames', 'DenseSampleFrames', 'UniformSample',
             'UniformSampleFrames')
_MULTI_CROP = ('ThreeCrop', 'TenCrop')


# ------------------------------------------------------------ the windows
class WindowPlan:
    """Where the windows lie: ``starts [W]``, each spanning ``span``
    frames, the model seeing frames ``start + offsets``."""

    def __init__(self, starts, span, offsets, rule, sampler, fps,
                 num_frames, stride, start, end, views,
                 label_at: str = 'centre'):
        self.starts = np.asarray(starts, np.int64)
        self.span = int(span)
        self.offsets = np.asarray(offsets, np.int64)
        self.rule = rule
        self.sampler = sampler
        self.fps = float(fps)
        self.num_frames = int(num_frames)
        self.stride = int(stride)
        self.start, self.end = int(start), int(end)
        self.views = views
        self.label_at = label_at

    def __len__(self) -> int:
        return len(self.starts)

    def frames(self, i: int) -> np.ndarray:
        return self.starts[i] + self.offsets

    def record(self, i: int) -> WindowRecord:
        s = int(self.starts[i])
        e = s + self.span - 1
        fps = self.fps or 1.0
        inds = [int(f) for f in self.frames(i)]
        return WindowRecord(index=i, start_frame=s, end_frame=e,
                            start_s=s / fps, end_s=(e + 1) / fps,
                            frame_inds=inds, label_frame=inds[-1]
                            if self.label_at == 'last' else None)

    def describe(self) -> dict:
        return dict(rule=self.rule, sampler=self.sampler, span=self.span,
                    stride=self.stride, offsets=self.offsets.tolist(),
                    start=self.start, end=self.end, views=self.views,
                    windows=len(self), label_at=self.label_at)


def label_position(model: nn.Module, cfg: Any) -> str:
    """``'last'`` where the model is online (its prediction is about the
    last frame it sees: the config's test/val dataset has
    ``label_at='last'``, or the head is ``CausalMSTCNHead``), else
    ``'centre'``."""
    for key in ('test_dataloader', 'val_dataloader'):
        ds = ((cfg.get(key) if cfg is not None else None) or {}).get(
            'dataset') or {}
        at = ds.get('label_at') if hasattr(ds, 'get') else None
        if at is not None:
            return 'last' if at == 'last' else 'centre'
    head = getattr(model, 'cls_head', None)
    if head is not None and type(head).__name__ == 'CausalMSTCNHead':
        return 'last'
    return 'centre'


def _ribbon_spans(tl: Timeline) -> List[Tuple[float, float]]:
    """Per window, the stretch of time whose frames take its prediction
    (``[start_s, end_s]`` clipped to halfway to its neighbours' label
    times, the frame rule of :meth:`Timeline.frame_predictions`)."""
    at = [w.at_s for w in tl]
    out = []
    for k, w in enumerate(tl):
        a = w.start_s if k == 0 else max(w.start_s, (at[k - 1] + at[k]) / 2)
        b = w.end_s if k + 1 == len(at) else min(w.end_s,
                                                 (at[k] + at[k + 1]) / 2)
        out.append((a, max(a, b)))
    return out


def _sampler(pipeline: list) -> dict:
    for t in pipeline:
        if t.get('type') in _SAMPLERS or str(t.get('type', '')).endswith(
                'SampleFrames'):
            return t
    raise ConfigError('the test pipeline has no frame sampler '
                      f'({", ".join(_SAMPLERS)}): long videos need one to '
                      'know the clip length')


def plan_windows(pipeline: list, num_frames: int, fps: float,
                 stride: Any = None, window_span: Any = None,
                 start: Any = None, end: Any = None,
                 views: str = 'one', label_at: str = 'centre'
                 ) -> WindowPlan:
    """The windows of a video of ``num_frames`` at ``fps`` (the module's
    rule). ``stride``/``window_span``/``start``/``end``: seconds, or
    strings such as ``'48f'``, ``'2s'``, ``'1:30'``.

    Raises:
        InputError: start/end outside the video, a window longer than the
            video (or the range), a stride under one frame.
    """
    samp = _sampler(pipeline)
    kind = samp.get('type')
    clip_len = int(samp.get('clip_len', 1) or 1)
    interval = int(samp.get('frame_interval', 1) or 1)
    num_clips = int(samp.get('num_clips', 1) or 1)
    fps_ = fps if fps and fps > 0 else 25.0
    duration = num_frames / fps_

    def frames_of(value, what):
        return to_frames(parse_time_spec(value, what), fps_) \
            if value is not None else None

    s0 = frames_of(start, '--start')
    e0 = frames_of(end, '--end')
    s0 = 0 if s0 is None else s0
    e0 = num_frames if e0 is None else e0
    if not 0 <= s0 < num_frames:
        raise InputError(f'--start {start} is outside the video (it lasts '
                         f'{duration:.2f} s, {num_frames} frames); give a '
                         f'start before {duration:.2f} s')
    if not 0 < e0 <= num_frames:
        raise InputError(f'--end {end} is outside the video (it lasts '
                         f'{duration:.2f} s, {num_frames} frames); give an '
                         f'end up to {duration:.2f} s')
    if e0 <= s0:
        raise InputError(f'--end {end} is not after --start {start}')
    uniform = str(kind).startswith('Uniform')
    if clip_len > 1 and not uniform:
        rule = 'clip'
        if window_span is not None:
            raise InputError(
                f'--window-span applies to segment (2D) models; this '
                f'model\'s window is its clip, clip_len {clip_len} x '
                f'frame_interval {interval} = {clip_len * interval} frames')
        span = clip_len * interval
        offsets = np.arange(clip_len) * interval
    else:
        rule = 'segments'
        segs = clip_len if uniform else num_clips
        span = frames_of(window_span, '--window-span')
        if span is None:
            span = int(round(segs * fps_))  # one segment per second
        if span < segs:
            raise InputError(f'--window-span {window_span} is {span} frames, '
                             f'fewer than the model\'s {segs} segments')
        offsets = np.floor((np.arange(segs) + 0.5) * span / segs).astype(
            np.int64)
    length = e0 - s0
    if span > length:
        what = 'the video' if (s0, e0) == (0, num_frames) else \
            'the --start/--end range'
        raise InputError(
            f'a window spans {span} frames ({span / fps_:.2f} s) but '
            f'{what} has {length} frames ({length / fps_:.2f} s); give a '
            f'longer range{" or a shorter --window-span" if rule == "segments" else ""}')
    step = frames_of(stride, '--stride')
    step = span if step is None else step
    if step < 1:
        raise InputError(f'--stride {stride} is under one frame at '
                         f'{fps_:g} fps; give at least 1f')
    starts = list(range(s0, e0 - span + 1, step))
    if starts[-1] + span < e0:
        starts.append(e0 - span)
    return WindowPlan(starts, span, offsets, rule, kind, fps_, num_frames,
                      step, s0, e0, views, label_at)


# --------------------------------------------------------------- decoding
class VideoStream:
    """decord reader of one video, frames decoded on demand in window
    order; checks the stream (frame count, frame rate) on opening.

    Raises:
        InputError: unreadable video, a header frame count the stream does
            not have, a variable frame rate.
    """

    def __init__(self, video: str, width: int = -1, height: int = -1,
                 check: bool = True, threads: int = 1) -> None:
        import decord
        self.video = video
        self._open_args = dict(num_threads=threads, width=width,
                               height=height)
        shown = sanitize_text(os.fspath(video), 0)
        size = probe_frame_size(video)
        check_frame_size(video, size, _limit(None, FRAME_PIXELS_ENV,
                                             MAX_FRAME_PIXELS))
        with captured_native_stderr() as log:
            try:
                self.reader = decord.VideoReader(video, num_threads=threads,
                                                 width=width, height=height)
            except Exception as e:  # noqa: BLE001 - decord's many errors
                said = log.summary(100)
                raise InputError(f'cannot read video {shown}: '
                                 f'{type(e).__name__}'
                                 f'{" (decoder: " + said + ")" if said else ""}'
                                 '; check that it is a video file FFmpeg '
                                 'can decode') from e
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps() or 0.0)
        if check:
            header = size[2] if size else 0
            if header and abs(header - self.num_frames) > max(
                    1, 0.01 * self.num_frames):
                raise InputError(
                    f'video {shown}: its header says {header} frames but the '
                    f'stream has {self.num_frames} (a truncated or badly '
                    'muxed file); re-encode it, e.g. ffmpeg -i IN -c:v '
                    'libx264 OUT.mp4')
            self._check_constant_rate(shown)
        first = self.reader[0].shape if self.num_frames else (0, 0)
        self.shape = (int(first[0]), int(first[1]))
        self.reader.seek(0)

    def _check_constant_rate(self, shown: str) -> None:
        n = self.num_frames
        if n < 3:
            return
        ts = self.reader.get_frame_timestamp(np.arange(n))[:, 0]
        d = np.diff(ts)
        med = float(np.median(d))
        if med <= 0:
            return
        off = np.abs(d - med) > 0.5 * med
        if off.mean() > 0.01:
            raise InputError(
                f'video {shown} has a variable frame rate (frame intervals '
                f'from {d.min() * 1000:.0f} to {d.max() * 1000:.0f} ms), so '
                'frame numbers are not times; convert it to a constant rate '
                f'first, e.g. ffmpeg -i IN -fps_mode cfr -r '
                f'{round(1 / med)} OUT.mp4')

    def reopen(self) -> None:
        """A fresh reader (after a decoding error the threaded decoder
        can fail on later frames too)."""
        import decord
        with captured_native_stderr():
            self.reader = decord.VideoReader(self.video, **self._open_args)

    def get(self, indices: Sequence[int]) -> Dict[int, np.ndarray]:
        """``{frame: uint8 RGB [H, W, 3]}`` for the distinct ``indices``
        (decoded in increasing order)."""
        idx = sorted({int(i) for i in indices})
        with captured_native_stderr():
            frames = self.reader.get_batch(idx).asnumpy()
        return {i: frames[k] for k, i in enumerate(idx)}


def _decode_error(e: Exception) -> str:
    first = str(e).strip().splitlines()[-1] if str(e).strip() else ''
    return sanitize_text(f'cannot decode: {type(e).__name__} '
                         f'{first[-160:]}', 200)


# -------------------------------------------------------- the model input
class WindowInputs:
    """The part of the config's test pipeline after its decode step, run
    on frames we decoded (one clip / one set of segments per window)."""

    def __init__(self, cfg, plan: WindowPlan, shape, filename: str) -> None:
        from mmaction.utils import register_all_modules
        from mmengine.dataset import Compose
        from mmengine.registry import DefaultScope
        register_all_modules(init_default_scope=False)
        pipeline = test_pipeline_cfg(cfg)
        k = next((i for i, t in enumerate(pipeline)
                  if str(t.get('type', '')).endswith('Decode')), None)
        if k is None:
            raise ConfigError('the test pipeline has no decode step '
                              '(DecordDecode, ...)')
        rest = pipeline[k + 1:]
        if plan.views == 'one':
            rest = [dict(type='CenterCrop', crop_size=t.get('crop_size'))
                    if t.get('type') in _MULTI_CROP else t for t in rest]
        scope = DefaultScope.get_current_instance()
        name = scope.scope_name if scope else 'mmaction'
        with DefaultScope.overwrite_default_scope(name or 'mmaction'):
            self.transforms = Compose(rest).transforms
        self.plan = plan
        self.shape = tuple(shape)
        self.filename = filename
        self.crops = None
        self.num_clips = len(plan.offsets) if plan.rule == 'segments' else 1
        self.clip_len = 1 if plan.rule == 'segments' else len(plan.offsets)

    def sample(self, frames: Dict[int, np.ndarray], inds: np.ndarray,
               label: int = -1) -> dict:
        """One window's packed sample (``inputs``, ``data_samples``)."""
        results = dict(
            imgs=[frames[int(i)] for i in inds], frame_inds=np.asarray(inds),
            original_shape=self.shape, img_shape=self.shape,
            clip_len=self.clip_len, num_clips=self.num_clips,
            frame_interval=int(self.plan.offsets[1] - self.plan.offsets[0])
            if len(self.plan.offsets) > 1 else 1,
            total_frames=self.plan.num_frames, avg_fps=self.plan.fps,
            filename=self.filename, label=label, start_index=0,
            modality='RGB')
        tracker = None
        if self.crops is None:
            tracker = _GeometryTracker()
            tracker.update('Decode', (None, None, None), results)
        for t in self.transforms:
            before = _shape_state(results) if tracker else None
            out = t(results)
            if out is None:
                raise ConfigError('the test pipeline dropped a window')
            results = out
            if tracker:
                tracker.update(type(t).__name__, before, results)
        if tracker:
            self.crops = tracker.crops()
        if 'inputs' not in results:
            raise ConfigError('the test pipeline does not end with '
                              'PackActionInputs')
        return results


# ------------------------------------------------------------ ground truth
# frame_ground_truth: mmxai.datasets.phase_labels (shared with the phase datasets)


# -------------------------------------------------------------------- lock
@contextlib.contextmanager
def run_lock(out_dir: str) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the run (released by the kernel even on
    SIGKILL).

    Raises:
        OutputError: another run holds it.
    """
    import fcntl
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, TIMELINE_FILES['lock'])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.pread(fd, 64, 0).decode(errors='replace').strip()
            except OSError:
                other = '?'
            raise OutputError(
                f'output folder {out_dir} is in use by another run '
                f'({other or "pid ?"}); wait for it to finish or choose '
                'another --out-dir') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'pid {os.getpid()}'.encode(), 0)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------- the run
def explain_long_video(model: Union[nn.Module, str], video: str,
                       method: Union[str, dict, BaseExplainer] = 'gradcam',
                       target: Union[str, int] = 'pred',
                       out_dir: Optional[str] = None,
                       stride: Any = None, window_span: Any = None,
                       start: Any = None, end: Any = None,
                       batch_size: int = 4, views: str = 'one',
                       gt: Optional[str] = None,
                       class_names: Union[None, str, Sequence[str]] = None,
                       outputs: Sequence[str] = ('timeline', 'video', 'html',
                                                 'maps'),
                       overlay_fps: float = 5.0, overlay_size: int = 480,
                       overlay_timeline: str = 'live',
                       map_size: int = 64, resume: bool = True,
                       progress: bool = True, keep_maps: bool = False,
                       checkpoint: Optional[str] = None,
                       device: str = 'cpu', trust_checkpoint: bool = False,
                       cfg_options: Optional[dict] = None,
                       allow_partial_checkpoint: bool = False,
                       timings: Optional[dict] = None,
                       label_at: Optional[str] = None,
                       sequence: Optional[SequenceTrack] = None,
                       **options) -> Timeline:
    """Explain a recognizer moment by moment over a whole video.

    Args:
        model: a recognizer from ``init_recognizer`` (with ``.cfg``) or a
            config to build one (``checkpoint``, ``device``, ...).
        video: the video file (constant frame rate).
        method, target, options: as :func:`explain_video`; ``target``
            may also be ``'gt'`` (the class of ``gt`` at each window's
            centre).
        out_dir: where to write (None: nothing is written; the timeline is
            returned, maps kept in memory with ``keep_maps``).
        stride, window_span, start, end: seconds or ``'48f'``/``'2s'``
            (see the module's window rule).
        batch_size: windows per model pass.
        views: ``'one'`` (default) or ``'crops'`` (the pipeline's crops).
        gt: ground-truth file (Cholec80 phases or CSV).
        outputs: ``timeline`` (csv, json, png), ``video`` (overlay.mp4 and
            plain.mp4; it writes the maps chunks too: the overlay pass
            reads them back), ``html`` (index.html, needs ``video``),
            ``maps`` (the per-window maps chunks). Window records are
            always written.
        overlay_fps, overlay_size: the overlay's frame rate and longest
            side; map_size: longest side of the stored maps.
        overlay_timeline: the overlay's prediction strip: ``'live'``
            (default: the predictions up to the cursor; the overlay is
            drawn during the sweep from the frames it decodes, a resumed
            run draws it in a second pass) or ``'full'`` (the whole
            video's predictions on every frame: a second pass after the
            sweep, decoding the video again).
        resume: skip windows whose records exist (same settings).
        progress: the status line on stderr.
        timings: a dict that receives seconds per stage (benchmarks).
        label_at: ``'last'`` (online: a window's prediction is about the
            last frame it sees) or ``'centre'``; None (default) reads it
            from the config (:func:`label_position`).
        sequence: a whole-video temporal explanation of a phase model
            (:class:`~mmxai.outputs.SequenceTrack`, from
            :func:`~mmxai.apis.explain_phase_video`), drawn into the
            overlay (a strip and a panel line), ``timeline.png`` (a panel
            per method) and ``index.html`` (a row and the top moments).
    Returns:
        :class:`~mmxai.outputs.Timeline`.
    Raises:
        InputError, OutputError, ConfigError, TargetError: one line.
    """
    t_start = time.perf_counter()
    timings = {} if timings is None else timings
    for k in ('decode', 'pipeline', 'explain', 'write', 'overlay',
              'timeline'):
        timings.setdefault(k, 0.0)
    check_video_file(video)
    outputs = set(outputs)
    unknown = outputs - {'timeline', 'video', 'html', 'maps'}
    if unknown:
        raise InputError(f'unknown long-video outputs {sorted(unknown)}: '
                         'choose from timeline video html maps')
    if batch_size < 1:
        raise InputError(f'batch_size {batch_size}: give 1 or more')
    if views not in ('one', 'crops'):
        raise InputError(f"views {views!r}: give 'one' or 'crops'")
    if label_at not in (None, 'last', 'centre'):
        raise InputError(f"label_at {label_at!r}: give 'last' (online) or "
                         "'centre'")
    if overlay_timeline not in ('live', 'full'):
        raise InputError(f"overlay_timeline {overlay_timeline!r}: give "
                         "'live' or 'full'")
    if out_dir is not None:
        check_writable(out_dir)
        if osp.exists(out_dir) and not osp.isdir(out_dir):
            raise OutputError(f'output folder {out_dir} is a file; choose '
                              'another --out-dir')
    gt_rows = read_ground_truth(gt) if gt else None
    if target == 'gt' and gt_rows is None:
        raise TargetError("target 'gt' on a long video needs gt=FILE "
                          '(per-frame labels)')
    names = given_class_names(class_names)
    stream = VideoStream(video)
    from .model import model_and_config
    model, cfg = model_and_config(
        model, checkpoint, device=device, trust_checkpoint=trust_checkpoint,
        cfg_options=cfg_options,
        allow_partial_checkpoint=allow_partial_checkpoint)
    pipeline = test_pipeline_cfg(cfg)
    plan = plan_windows(pipeline, stream.num_frames, stream.fps, stride,
                        window_span, start, end, views,
                        label_at or label_position(model, cfg))
    explainer = method if isinstance(method, BaseExplainer) else \
        build_explainer(method, model, **options)
    num_classes = explainer.adapter.num_classes
    names = matched_class_names(names, model, cfg, num_classes)
    gt_frames = None if gt_rows is None else frame_ground_truth(
        gt_rows, stream.num_frames, plan.fps, names, num_classes)
    if isinstance(target, int) and not 0 <= target < num_classes:
        raise TargetError(f'target class {target} is out of range: the '
                          f'model has {num_classes} classes')
    inputs = WindowInputs(cfg, plan, stream.shape, video)
    settings = json_safe(dict(
        video=osp.abspath(video), video_frames=stream.num_frames,
        fps=plan.fps, video_shape=list(stream.shape),
        method=explainer.name, method_settings=explainer.settings(),
        target=target, plan=plan.describe(), map_size=map_size,
        gt=osp.abspath(gt) if gt else None, mmxai_version=__version__))
    if sequence is not None:
        settings['sequence'] = json_safe(dict(
            folder=sequence.folder, methods=list(sequence.importance),
            shown=sequence.shown, explained=len(sequence)))
    tl = Timeline([plan.record(i) for i in range(len(plan))], plan.fps,
                  stream.num_frames, names, out_dir, {}, gt_frames, None,
                  settings)
    lock = run_lock(out_dir) if out_dir is not None else \
        contextlib.nullcontext()
    with lock:
        if out_dir is not None:  # temporary files of a killed run (the
            clean_stale(out_dir)  # overlay's, drawn during the sweep)
        done = _resume_state(out_dir, settings, resume) if out_dir else {}
        for i, rec in done.items():
            tl.windows[i] = rec
        overlay = None
        if out_dir is not None and 'video' in outputs and not done and \
                overlay_timeline == 'live':  # drawn during the sweep
            overlay = _Overlay(tl, plan, stream.shape, overlay_fps,
                               overlay_size, _class_names(tl, num_classes),
                               timings=timings, sequence=sequence)
            overlay.in_sweep = True
        with overlay or contextlib.nullcontext():
            _run_windows(tl, plan, stream, inputs, explainer, target,
                         gt_frames, batch_size, out_dir, outputs, map_size,
                         keep_maps, progress, timings, set(done), overlay)
        tl.accuracy = tl.frame_accuracy()
        if out_dir is not None:
            _write_run_files(tl, plan, stream, outputs, overlay_fps,
                             overlay_size, timings, num_classes,
                             overlay.paths if overlay else None,
                             overlay_timeline == 'live', sequence)
    timings['total'] = time.perf_counter() - t_start
    return tl


def _resume_state(out_dir: str, settings: dict, resume: bool
                  ) -> Dict[int, WindowRecord]:
    run_path = osp.join(out_dir, TIMELINE_FILES['run'])
    old = read_json(run_path)
    if old is not None and resume:
        keys = ('video', 'video_frames', 'method', 'method_settings',
                'target', 'plan', 'map_size', 'gt')
        diff = [k for k in keys if old.get(k) != settings.get(k)]
        if diff:
            raise OutputError(
                f'{out_dir} holds a long-video run with other settings '
                f'({", ".join(diff)}); re-run with --no-resume to redo it '
                'or choose another --out-dir')
    write_json(run_path, settings, indent=1)
    if not resume:
        return {}
    done = {}
    folder = osp.join(out_dir, osp.dirname(LONG_VIDEO_LAYOUT.json))
    if not osp.isdir(folder):
        return {}
    for name in os.listdir(folder):
        if not name.endswith('.json') or name.startswith('.'):
            continue
        rec = read_json(osp.join(folder, name))
        if not isinstance(rec, dict) or rec.get('status') != 'ok':
            continue  # failed windows are tried again
        npz = osp.join(out_dir, LONG_VIDEO_LAYOUT.path('npz', rec['index']))
        if rec.get('has_maps') and not osp.isfile(npz):
            continue
        r = WindowRecord.from_dict(rec)
        done[r.index] = r
    return done


def _batches(todo: List[int], size: int) -> Iterator[List[int]]:
    for k in range(0, len(todo), size):
        yield todo[k:k + size]


def _run_windows(tl, plan, stream, inputs, explainer, target, gt_frames,
                 batch_size, out_dir, outputs, map_size, keep_maps,
                 progress, timings, skip, overlay=None) -> None:
    """The sweep, one batch at a time. ``overlay`` (an entered
    :class:`_Overlay`, fresh runs): after each batch it draws the output
    frames before the next batch's first window (all the windows covering
    them are done), from the frames the batch decoded: the sweep decodes
    the overlay frames inside the batch's windows along with the model's
    (up to ``OVERLAY_BUFFER_BYTES`` of them at the overlay size); the
    others (between windows, beyond the buffer) are decoded after the
    batch."""
    from mmengine.dataset import pseudo_collate
    writer = OutputWriter(['json', 'npz'], LONG_VIDEO_LAYOUT, json_indent=0)
    todo = [i for i in range(len(plan)) if i not in skip]
    bar = StatusLine(len(plan), 'windows', 'windows', progress)
    frames_seen = 0
    h0, w0 = stream.shape
    scale = min(1.0, map_size / max(h0, w0))
    map_shape = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    n_done = len(skip)
    batches = list(_batches(todo, batch_size))
    for bn, batch in enumerate(batches):
        ok, samples = [], []
        extra, kept, keep, stop = None, {}, None, 0
        if overlay is not None:
            extra, stop = _overlay_frames_of(overlay, plan, batch, batches[
                bn + 1][0] if bn + 1 < len(batches) else None)
            t_keep = [0.0]

            def _keep(f, img):
                t0 = time.perf_counter()
                kept[f] = overlay.small(img)
                t_keep[0] += time.perf_counter() - t0
            keep = _keep
        t = time.perf_counter()
        for i, frames, error in _window_frames(stream, plan, batch, extra,
                                               keep):
            t1 = time.perf_counter()
            timings['decode'] += t1 - t
            rec = tl.windows[i]
            if frames is None:
                rec.status, rec.error = 'failed', error
            else:
                rec.gt = None if gt_frames is None else int(
                    gt_frames[int(rec.at_frame)])
                samples.append(inputs.sample(frames, plan.frames(i),
                                             rec.gt if rec.gt is not None
                                             else -1))
                ok.append(i)
            del frames  # a window's full-size frames go; its input stays
            t = time.perf_counter()
            timings['pipeline'] += t - t1
        if ok:
            t = time.perf_counter()
            data = pseudo_collate(samples)
            tgt = target
            if target == 'gt':
                tgt = [max(0, tl.windows[i].gt) for i in ok]
            exp = explainer.explain(data, target=tgt)
            timings['explain'] += time.perf_counter() - t
            t = time.perf_counter()
            _fill_records(tl, exp, ok, inputs, stream.shape, map_shape,
                          keep_maps)
            frames_seen += sum(len(plan.offsets) for _ in ok)
            timings['write'] += time.perf_counter() - t
        if overlay is not None:
            for i in ok:
                overlay.add(i, tl.memory_maps[i])
        t = time.perf_counter()
        if out_dir is not None:
            for i in batch:
                _write_window(writer, out_dir, tl, i, bool(
                    {'maps', 'video'} & outputs))
        timings['write'] += time.perf_counter() - t
        if overlay is not None:
            t = time.perf_counter()
            overlay.advance(stop, kept, stream)
            timings['decode'] -= t_keep[0]  # the resizing is the overlay's
            timings['overlay'] += time.perf_counter() - t + t_keep[0]
            del kept
        n_done += len(batch)
        bar.update(n_done, frames_seen, len(skip))
    bar.update(n_done, frames_seen, len(skip), force=True)


def _overlay_frames_of(overlay, plan, batch, next_window):
    """The overlay's output frames drawn after ``batch``: ``overlay.n`` up
    to ``stop`` (those before ``next_window``'s first frame, or all); and
    the source frames among them that the batch decodes with its own: those
    inside the batch's windows, as many as the buffer holds."""
    src = overlay.src
    if next_window is None:
        stop = len(src)
    else:
        stop = int(np.searchsorted(src, plan.starts[next_window]))
    cand = src[overlay.n:stop]
    starts = plan.starts[batch]
    k = np.searchsorted(starts, cand, side='right') - 1
    inside = (k >= 0) & (cand <= starts[np.maximum(k, 0)] + plan.span - 1)
    return cand[inside][:overlay.buffer_cap], stop


def _window_frames(stream, plan, batch, extra=None, keep=None):
    """Yield ``(i, {frame: [H, W, 3]} or None, error)`` for the windows of
    ``batch`` in order, decoding the union of their frames in increasing
    order (each frame once, as one ``get_batch`` over the union would) but
    holding only the frames from the next window's first frame on: at most
    about one window span of full-size frames, whatever the batch size
    (a whole batch of 854x480 frames is 8 x 16 x 1.2 MB, twice over while
    decord copies it out). A window whose frames do not decode is retried
    on a fresh reader once, then yielded as failed with the decoder's
    message (only windows with corrupt frames fail).

    ``extra`` (sorted frame numbers) are decoded in the same increasing
    pass and handed to ``keep(frame, image)`` as they come (the overlay's
    frames); one that fails to decode is just not handed over."""
    frames_of = [plan.frames(i) for i in batch]
    extra = np.asarray([] if extra is None else extra, np.int64)
    model = np.unique(np.concatenate(frames_of))
    want = np.union1d(model, extra)
    only_extra = set(np.setdiff1d(extra, model).tolist())
    extra_set = set(extra.tolist())
    cache: Dict[int, np.ndarray] = {}
    pos = 0

    def decode(chunk):
        got = stream.get(chunk)
        for f in [f for f in got if f in extra_set]:
            keep(f, got[f])
            if f in only_extra:
                del got[f]
        cache.update(got)

    for n, i in enumerate(batch):
        need = frames_of[n]
        k = int(np.searchsorted(want, need.max(), side='right'))
        if k > pos:
            chunk, pos = want[pos:k], k
            try:
                decode(chunk)
            except Exception:  # noqa: BLE001 - decord raises its own errors
                stream.reopen()
        error = None
        missing = [int(f) for f in need if int(f) not in cache]
        for attempt in range(2 if missing else 0):
            try:  # a fresh reader once: read-ahead errors
                cache.update(stream.get(missing))
                break
            except Exception as e:  # noqa: BLE001
                stream.reopen()
                if attempt:
                    error = _decode_error(e)
        yield i, (None if error else {int(f): cache[int(f)] for f in need}
                  ), error
        if n + 1 < len(batch):
            first = int(frames_of[n + 1].min())
            for f in [f for f in cache if f < first]:
                del cache[f]
    cache.clear()
    if pos < len(want):  # extra frames after the last window's
        try:
            decode(want[pos:])
        except Exception:  # noqa: BLE001 - decoded again by the overlay
            stream.reopen()
        cache.clear()


def _fill_records(tl, exp, ok, inputs, shape, map_shape, keep_maps):
    probs = exp.probs.detach().float().cpu().numpy()
    scores = exp.scores.detach().float().cpu().numpy()
    targets = exp.targets.detach().cpu().numpy()
    raw = exp.raw_maps.detach().float().cpu().numpy()
    for b, i in enumerate(ok):
        rec = tl.windows[i]
        p = probs[b]
        order = np.argsort(-p)[:5]
        rec.topk = [(int(c), float(p[c])) for c in order]
        rec.pred, rec.pred_prob = int(order[0]), float(p[order[0]])
        rec.target = int(targets[b])
        rec.target_prob = float(p[rec.target])
        rec.target_score = float(scores[b, rec.target])
        maps, signed = display_maps(exp, b)  # [V, T, H, W]
        series = frame_series(maps, signed)
        mass = sum(s for s in series.values()).mean(axis=0)  # [T]
        total = mass.sum()
        rec.mass = [float(m / total) if total > 0 else 0.0 for m in mass]
        rec.evidence = float(np.clip(raw[b], 0, None).mean())
        rec.status, rec.error = 'ok', None
        inds, omaps, valid = maps_to_original(
            maps, np.asarray(rec.frame_inds), inputs.crops, shape,
            map_shape)
        tl.memory_maps[i] = dict(
            maps=omaps.astype(np.float16), valid=valid.any(0),
            frame_inds=inds, probs=p.astype(np.float16),
            signed=np.array(signed))
    if not keep_maps and tl.out_dir is None:
        tl.memory_maps.clear()


def _write_window(writer, out_dir, tl, i, with_maps):
    rec = tl.windows[i]
    arrays = tl.memory_maps.pop(i, None)
    ranks = [RankOutputs(arrays)] if (arrays is not None and with_maps) \
        else []
    d = rec.to_dict()
    d['has_maps'] = bool(ranks)

    def record(files):
        return d
    # nothing of the window stays in memory but its record: the overlay
    # reads the maps back from their chunks (the outputs 'video' writes
    # them even without 'maps')
    writer.write_sample(out_dir, i, ranks, record=record)


# ------------------------------------------------------- run-level files
def _class_names(tl, num_classes: int) -> List[str]:
    """One display name per class (the overlay's and the viewer's)."""
    k = len(tl.class_names) if tl.class_names else num_classes
    return [tl.label(c) for c in range(k)]


def _write_run_files(tl, plan, stream, outputs, overlay_fps, overlay_size,
                     timings, num_classes, overlay_files=None,
                     live=True, sequence=None) -> None:
    from ..visualization.timeline import class_colors, plot_timeline
    from ..visualization.timeline_viewer import viewer_html
    out = tl.out_dir
    names = _class_names(tl, num_classes)
    k = len(names)
    t = time.perf_counter()
    if overlay_files is not None:  # drawn during the sweep
        tl.files.update(overlay_files)
    elif 'video' in outputs:
        files = _write_overlay(tl, plan, stream, overlay_fps, overlay_size,
                               names, timings, live=live, sequence=sequence)
        tl.files.update(files)
    timings['overlay'] += time.perf_counter() - t
    t = time.perf_counter()
    tl.files['records'] = osp.join(out, osp.dirname(LONG_VIDEO_LAYOUT.json))
    if 'timeline' in outputs:
        ok = [w for w in tl]
        times = np.array([w.at_s for w in ok])
        pred = np.array([w.pred if w.ok else -1 for w in ok])
        conf = np.array([w.target_prob if w.ok else 0.0 for w in ok])
        imp = np.array([w.evidence if w.ok else 0.0 for w in ok])
        gt = gt_t = None
        if tl.gt is not None:
            step = max(1, int(round(tl.fps)))  # one sample per second
            sel = np.arange(plan.start, plan.end, step)
            gt, gt_t = tl.gt[sel], sel / tl.fps
        tl.files['png'] = plot_timeline(
            osp.join(out, TIMELINE_FILES['png']), times, pred, conf, imp,
            names, gt=gt, gt_times=gt_t,
            title=f'{osp.basename(stream.video)}: '
            f'{tl.settings["method"]}, {len(tl)} windows of '
            f'{plan.span} frames every {plan.stride} frames', accuracy=tl.accuracy,
            window_s=plan.span / (plan.fps or 25.0), sequence=sequence)
        tl.files['csv'] = write_timeline_csv(
            osp.join(out, TIMELINE_FILES['csv']), tl)
    if 'html' in outputs and 'video' in outputs:
        colors = class_colors(k).tolist()
        gt_segs = None
        if tl.gt is not None:
            gt_segs = []
            g = tl.gt
            change = np.flatnonzero(np.diff(g)) + 1
            bounds = np.concatenate([[0], change, [len(g)]])
            for a, b in zip(bounds[:-1], bounds[1:]):
                gt_segs.append([a / tl.fps, b / tl.fps, int(g[a])])
        ev = max([w.evidence for w in tl if w.ok] + [0.0])
        shown = sorted({w.pred for w in tl if w.ok} | (
            set(int(c) for c in np.unique(tl.gt) if c >= 0)
            if tl.gt is not None else set()))
        data = dict(
            title=f'{osp.basename(stream.video)}: {tl.settings["method"]}',
            video=TIMELINE_FILES['video'], plain_video=TIMELINE_FILES[
                'plain'], t0=plan.start / tl.fps, t1=plan.end / tl.fps,
            classes=names, colors=colors, max_importance=ev, gt=gt_segs,
            accuracy=tl.accuracy, shown_classes=shown[:30],
            codec=tl.settings.get('overlay_codec'),
            windows=[dict(start_s=round(w.start_s, 3),
                          end_s=round(w.end_s, 3), at_s=round(w.at_s, 3),
                          ribbon_s=[round(a, 3), round(b, 3)],
                          pred=w.pred if w.ok else -1,
                          prob=round(w.target_prob, 4) if w.ok else 0,
                          importance=round(w.evidence, 6),
                          topk=[[c, round(p, 4)] for c, p in w.topk])
                     for w, (a, b) in zip(tl, _ribbon_spans(tl))])
        if sequence is not None and len(sequence):
            data['sequence'] = sequence.viewer_data()
        path = osp.join(out, TIMELINE_FILES['html'])
        with atomic_path(path) as tmp:
            with open(tmp, 'w') as f:
                f.write(viewer_html(data))
        tl.files['html'] = path
    if 'timeline' in outputs:
        tl.files['json'] = osp.join(out, TIMELINE_FILES['json'])
        write_timeline_json(tl.files['json'], tl)
    timings['timeline'] += time.perf_counter() - t


#: At most this many bytes of overlay-size frames are kept by the sweep for
#: the overlay frames it draws after each batch; frames beyond it are decoded
#: again after the batch (a few chunks of 16).
OVERLAY_BUFFER_BYTES = 64 * 2**20
_OVERLAY_CHUNK = 16


class _Overlay:
    """``overlay.mp4`` and ``plain.mp4`` over ``start .. end``, drawn one
    output frame at a time, in order.

    Output frame ``n`` shows source frame ``src[n] = round(start + n * fps /
    overlay_fps)`` resized to the overlay size (bilinear); its heat map is
    the mean over the windows whose span covers the frame of each window's
    map at that frame (linear
    between the window's two nearest sampled frames); a label panel (the
    covering window whose centre is nearest: its top class and probability,
    the explained class) and a timeline strip with a cursor below the frame.
    The strip's prediction row is ``live`` (default) up to the cursor (each
    column in the colour of the prediction at its time once the cursor has
    passed it, grey ahead of it), so a frame depends only on the windows
    that start at or before it and can be drawn while the sweep goes on;
    ``live=False`` draws the whole video's predictions on every frame
    (only possible after the sweep: the second pass). The ground-truth row
    is always whole. Windows enter with :meth:`add` (their maps) before the
    first frame they cover is drawn."""

    def __init__(self, tl, plan, shape, overlay_fps, overlay_size, names,
                 live: bool = True, timings: Optional[dict] = None,
                 sequence: Optional[SequenceTrack] = None) -> None:
        from ..visualization.timeline import class_colors, ribbon_image
        self.tl, self.plan, self.names, self.live = tl, plan, names, live
        self.seq = sequence if sequence is not None and len(sequence) \
            else None
        self.timings = {} if timings is None else timings
        h0, w0 = shape
        scale = overlay_size / max(h0, w0)  # small videos are enlarged
        self.ow = ow = max(2, int(round(w0 * scale / 2)) * 2)
        self.oh = oh = max(2, int(round(h0 * scale / 2)) * 2)
        fps = tl.fps
        step = fps / overlay_fps if overlay_fps and overlay_fps < fps else 1.0
        self.out_fps = fps / step
        src = np.arange(plan.start, plan.end - 1e-9, step)
        src = np.round(src).astype(np.int64)
        self.src = src[src < plan.end]
        self.colors = class_colors(len(names))
        self.strip_h, self.panel_h = 10, 36
        n = max(1, len(self.src))
        # ribbon_image's column rule: column c shows output frame cols[c]
        self.cols = np.minimum((np.arange(ow) + 0.5) * n / ow,
                               n - 1).astype(int)
        if live:
            from ..visualization.timeline import NO_DATA
            strip = np.empty((self.strip_h, ow, 3), np.uint8)
            strip[:] = NO_DATA
        else:
            strip = ribbon_image(tl.frame_predictions(self.src), ow,
                                 self.strip_h, self.colors)
        if tl.gt is not None:
            strip = np.concatenate([strip, ribbon_image(
                tl.gt[self.src], ow, self.strip_h, self.colors)])
        self.strip = strip
        self.seq_h = 0
        if self.seq is not None:  # the sequence strip: one column per
            self.seq_h, self.panel_h = 24, 50  # strip column, in time
            self.seq_times = self.src[self.cols] / fps if len(self.src) \
                else np.zeros(ow)
            self.seq_span = max(1e-9, (plan.end - plan.start) / fps)
            self._seq_img = (None, None, False)  # (index, image, zoomed)
        self.height = oh + self.panel_h + strip.shape[0] + self.seq_h
        self.buffer_cap = max(1, OVERLAY_BUFFER_BYTES // (oh * ow * 3))
        self.active: Dict[int, dict] = {}
        self.n = 0  # the next output frame
        self._filled = 0  # live strip: columns drawn so far
        out = tl.out_dir
        self.paths = dict(video=osp.join(out, TIMELINE_FILES['video']),
                          plain=osp.join(out, TIMELINE_FILES['plain']))
        self._stack = None
        self.in_sweep = False  # drawn during the sweep (timings)

    def __enter__(self) -> '_Overlay':
        from ..visualization.timeline import StreamVideoWriter
        stack = contextlib.ExitStack()
        with stack:
            tmp_v = stack.enter_context(atomic_path(self.paths['video']))
            tmp_p = stack.enter_context(atomic_path(self.paths['plain']))
            size = (self.height, self.ow)
            self.wv = stack.enter_context(
                StreamVideoWriter(tmp_v, self.out_fps, size))
            self.wp = stack.enter_context(
                StreamVideoWriter(tmp_p, self.out_fps, size))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        t = time.perf_counter()
        stack.__exit__(*exc)  # writers close (or abort), files replace
        dt = time.perf_counter() - t
        self._add_time('overlay_encode', dt)
        if self.in_sweep:  # else the second pass is timed as a whole
            self._add_time('overlay', dt)
        if exc[0] is None:
            s = self.tl.settings
            s['overlay_codec'] = self.wv.codec
            s['overlay_fps'] = self.out_fps
            s['overlay_size'] = [self.height, self.ow]
            s['overlay_timeline'] = 'live' if self.live else 'full'

    def small(self, frame: np.ndarray) -> np.ndarray:
        """A decoded frame at the overlay's size."""
        if frame.shape[:2] == (self.oh, self.ow):
            return frame
        import cv2  # bilinear: 0.7 ms a 854x480 frame, INTER_AREA 11 ms
        return cv2.resize(frame, (self.ow, self.oh),
                          interpolation=cv2.INTER_LINEAR)

    def add(self, i: int, arrays: dict) -> None:
        """Window ``i``'s maps (a successful window), before it is drawn."""
        self.active[i] = arrays

    def draw(self, frame: np.ndarray) -> None:
        """Output frame ``self.n`` from its source frame (overlay size)."""
        from .. import visualization as vis
        from ..visualization.timeline import (draw_cursor_strip,
                                              draw_text_panel, format_clock)
        tl, plan, names = self.tl, self.plan, self.names
        n, f = self.n, int(self.src[self.n])
        for i in [i for i in self.active if tl[i].end_frame < f]:
            del self.active[i]
        heat, valid, signed, near = _heat_at(tl, self.active, f,
                                             (self.oh, self.ow))
        if heat is not None:
            shown = vis.overlay_heatmap(frame[None], heat[None], alpha=0.5,
                                        valid_mask=valid[None],
                                        signed=signed)[0]
        else:
            shown = frame
        if near is not None:
            w = tl[near]
            lines = [f'{format_clock(f / tl.fps)}  pred '
                     f'{names[w.pred]} {w.pred_prob:.2f}',
                     f'{tl.settings["method"]}: {names[w.target]} '
                     f'p={w.target_prob:.2f}']
        else:
            lines = [f'{format_clock(f / tl.fps)}  no window', '']
        if self.live:  # the columns whose time the cursor has reached
            k = int(np.searchsorted(self.cols, n, side='right'))
            if k > self._filled:
                from ..visualization.timeline import NO_DATA
                pred = tl[near].pred if near is not None else -1
                self.strip[:self.strip_h, self._filled:k] = NO_DATA \
                    if pred < 0 else self.colors[
                        min(pred, len(self.colors) - 1)]
                self._filled = k
        pos = (f - plan.start) / max(1, plan.end - 1 - plan.start)
        cur = draw_cursor_strip(self.strip, pos)
        if self.seq is not None:
            line, img = self._sequence_row(f / tl.fps)
            lines.append(line)
            cur = np.concatenate([cur, img])  # its tick: the time explained
        panel = draw_text_panel(self.ow, self.panel_h, lines)
        t = time.perf_counter()
        self.wv.write(np.concatenate([panel, shown, cur]))
        self.wp.write(np.concatenate([panel, frame, cur]))
        self._add_time('overlay_encode', time.perf_counter() - t)
        self.n += 1

    def _sequence_row(self, tau: float):
        """The panel line and the strip of the sequence explanation shown
        at ``tau`` s: the last explained time at or before it."""
        from ..visualization.timeline import format_clock, importance_strip
        seq = self.seq
        i = seq.index_at(tau)
        if self._seq_img[0] != i or self._seq_img[1] is None:
            vals = np.full(self.ow, np.nan, np.float32)
            tick, zoomed = None, False
            if i is not None:
                vals, tick, zoomed = seq.strip_values(i, self.seq_times,
                                                      self.seq_span)
            self._seq_img = (i, importance_strip(vals, self.ow, self.seq_h,
                                                 tick), zoomed)
        if i is None:
            line = f'what drives the phase: first explained at ' \
                f'{format_clock(seq.times_s[0])}'
        else:
            top = ' '.join(format_clock(seq.grid_s[s]) for s in seq.top(i))
            zoom = f', strip {format_clock(seq.grid_s[seq.context_start[i]])}' \
                f'-{format_clock(seq.times_s[i])}' if self._seq_img[2] else ''
            line = f'{seq.label(int(seq.targets[i]))} at ' \
                f'{format_clock(seq.times_s[i])} driven by {top} ' \
                f'({seq.shown}{zoom})'
        return line, self._seq_img[1]

    def advance(self, stop: int, frames: Dict[int, np.ndarray],
                stream: 'VideoStream') -> None:
        """Draw output frames ``self.n .. stop - 1``: from ``frames`` (overlay
        size, by source frame; taken out as drawn) or decoded from
        ``stream`` (full size, in chunks of 16)."""
        while self.n < stop:
            group = [int(f) for f in self.src[self.n:min(
                stop, self.n + _OVERLAY_CHUNK)]]
            need = [f for f in group if f not in frames]
            if need:
                t = time.perf_counter()
                for f, img in _decode_or_black(stream, need, (
                        stream.shape[0], stream.shape[1])).items():
                    frames[f] = self.small(img)
                self._add_time('overlay_decode', time.perf_counter() - t)
            for f in group:
                self.draw(frames.pop(f))

    def _add_time(self, key: str, dt: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + dt


def _decode_or_black(reader, idx, shape) -> Dict[int, np.ndarray]:
    """``reader.get(idx)``; where that fails, frame by frame on a fresh
    reader, a black frame for each frame that does not decode."""
    try:
        return reader.get(idx)
    except Exception:  # noqa: BLE001 - corrupt frames
        reader.reopen()
    got = {}
    for f in idx:
        try:
            got.update(reader.get([f]))
        except Exception:  # noqa: BLE001
            got[int(f)] = np.zeros((shape[0], shape[1], 3), np.uint8)
            reader.reopen()
    return got


def _write_overlay(tl, plan, stream, overlay_fps, overlay_size, names,
                   timings: Optional[dict] = None, live: bool = True,
                   decoder_scale: bool = True,
                   sequence: Optional[SequenceTrack] = None
                   ) -> Dict[str, str]:
    """The overlay as a second pass after the sweep (``overlay_timeline=
    'full'``, or a resumed run, whose finished windows' frames were not
    decoded in this process): decodes ``start .. end`` again and reads the
    maps chunks back. ``decoder_scale``: decord scales the frames while
    decoding (less to convert; its scaler's pixels differ from
    :meth:`_Overlay.small`'s by a few levels), else full-size frames are
    resized as the sweep resizes them (the same frames as the overlay drawn
    during the sweep). ``timings`` receives ``overlay_decode`` and
    ``overlay_encode``."""
    ov = _Overlay(tl, plan, stream.shape, overlay_fps, overlay_size, names,
                  live=live, timings=timings, sequence=sequence)
    if decoder_scale:
        reader = VideoStream(stream.video, width=ov.ow, height=ov.oh,
                             check=False)
        shape, chunk = (ov.oh, ov.ow), 64
    else:
        reader, shape, chunk = VideoStream(stream.video, check=False), \
            stream.shape, _OVERLAY_CHUNK
    win_order = sorted(range(len(tl)), key=lambda i: tl[i].start_frame)
    nxt = 0
    with ov:
        for c0 in range(0, len(ov.src), chunk):
            idx = [int(f) for f in ov.src[c0:c0 + chunk]]
            t = time.perf_counter()
            got = _decode_or_black(reader, idx, shape)
            ov._add_time('overlay_decode', time.perf_counter() - t)
            for f in idx:
                while nxt < len(win_order) and \
                        tl[win_order[nxt]].start_frame <= f:
                    i = win_order[nxt]
                    if tl[i].ok:
                        ov.add(i, tl.maps(i))
                    nxt += 1
                ov.draw(ov.small(got.pop(f)))
            del got
    return dict(ov.paths)


def _heat_at(tl, active, f, size):
    """The combined map of frame ``f`` from the windows in ``active``."""
    import cv2
    acc = cnt = None
    signed = False
    near, best = None, np.inf
    for i, arr in active.items():
        w = tl[i]
        if not w.start_frame <= f <= w.end_frame:
            continue
        d = abs(f - w.at_frame)
        if d < best:
            near, best = i, d
        inds = arr['frame_inds']
        maps = arr['maps'].astype(np.float32)
        if len(inds) == 1:
            m = maps[0]
        else:
            k = int(np.clip(np.searchsorted(inds, f), 1, len(inds) - 1))
            a, b = inds[k - 1], inds[k]
            u = float(np.clip((f - a) / max(1, b - a), 0, 1))
            m = (1 - u) * maps[k - 1] + u * maps[k]
        v = arr['valid'].astype(np.float32)
        signed |= bool(arr.get('signed', False))
        if acc is None:
            acc, cnt = m * v, v.copy()
        else:
            acc += m * v
            cnt += v
    if acc is None:
        return None, None, False, near
    heat = np.divide(acc, cnt, out=np.zeros_like(acc), where=cnt > 0)
    heat = cv2.resize(heat, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    valid = cv2.resize((cnt > 0).astype(np.uint8), (size[1], size[0]),
                       interpolation=cv2.INTER_NEAREST).astype(bool)
    return heat, valid, signed, near
