"""Run a config's own test pipeline on a video file and keep the geometry
needed to map explanation maps back onto the original frames.

Untrusted videos: before anything is decoded, the frame size is probed
(OpenCV reads the container's stream header, no frame is kept) and checked
against two limits, so a tiny file cannot expand into gigabytes:

* ``MMXAI_MAX_FRAME_PIXELS`` (default :data:`MAX_FRAME_PIXELS`, 8192 x 4320,
  DCI 8K: 8K UHD 7680 x 4320 passes): pixels of one frame;
* ``MMXAI_MAX_VIDEO_PIXELS`` (default :data:`MAX_VIDEO_PIXELS`, 2**31, about
  6 GiB as RGB): pixels the decoder is asked for at once, frames the test
  pipeline samples x width x height, checked just before its decode step.

Either may be raised (an integer, or ``WxH``; ``0`` turns the limit off),
also per call (``max_frame_pixels`` / ``max_video_pixels``). What decoders
print natively (decord echoes the bytes of a file it cannot open) is
captured (:mod:`mmxai.utils.native_stderr`), kept in
``VideoSample.decoder_log`` and quoted only sanitised.
"""
import copy
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate

from ..errors import ConfigError, InputError
from ..utils.native_stderr import captured_native_stderr, sanitize_text

#: Kept by PackActionInputs in addition to its defaults.
EXTRA_META_KEYS = ('frame_inds', 'original_shape', 'num_clips', 'clip_len',
                   'filename')
_DECODE_RAW = ('RawFrameDecode', )
#: Default limit of pixels in one frame (DCI 8K, 8192 x 4320).
MAX_FRAME_PIXELS = 8192 * 4320
#: Default limit of pixels decoded at once (frames x width x height).
MAX_VIDEO_PIXELS = 2 ** 31
FRAME_PIXELS_ENV = 'MMXAI_MAX_FRAME_PIXELS'
VIDEO_PIXELS_ENV = 'MMXAI_MAX_VIDEO_PIXELS'


@dataclass
class CropRegion:
    """Where one spatial crop of the model input lies in the original frame."""
    box: Tuple[float, float, float, float]  # x1, y1, x2, y2 (original px)
    flip: bool = False


@dataclass
class VideoSample:
    """A video after the test pipeline, ready for ``explainer.explain``.

    Attributes:
        data: a batch of one (``dict(inputs=[...], data_samples=[...])``).
        frame_inds: ``[num_clips * clip_len]`` original frame indices.
        original_shape: ``(H0, W0)`` of the decoded frames.
        crops: one :class:`CropRegion` per spatial crop (outermost views).
        fps: the video's frame rate (0 if unknown).
        total_frames: frames in the video.
        sampling: how the pipeline sampled the video (see
            :func:`sampling_report`): ``video_frames``, ``frames_needed``,
            ``frames_sampled``, ``frames_repeated``.
        warnings: one-line warnings (also printed to stderr), e.g. a video
            shorter than a clip.
        decoder_log: what the decoders printed natively, sanitised.
    """
    data: dict
    frame_inds: np.ndarray
    original_shape: Tuple[int, int]
    crops: List[CropRegion] = field(default_factory=list)
    fps: float = 0.0
    total_frames: int = 0
    filename: str = ''
    sampling: dict = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    decoder_log: str = ''

    @property
    def num_crops(self) -> int:
        """Spatial crops per frame (views = crops x clips)."""
        return max(1, len(self.crops))


def test_pipeline_cfg(cfg: Config) -> list:
    """The config's test pipeline, made to read a video file.

    Looks for ``test_pipeline``, then ``test_dataloader.dataset.pipeline``,
    then ``val_pipeline``. Raw-frame pipelines are switched to decord.
    Raises:
        ConfigError: the config has no test pipeline.
    """
    pipeline = cfg.get('test_pipeline')
    if pipeline is None:
        pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
            'pipeline')
    if pipeline is None:
        pipeline = cfg.get('val_pipeline')
    if not pipeline:
        raise ConfigError(
            'the config has no test pipeline (test_pipeline, '
            'test_dataloader.dataset.pipeline or val_pipeline)')
    pipeline = [copy.deepcopy(dict(t)) for t in pipeline]
    types = [t.get('type') for t in pipeline]
    if any(t in _DECODE_RAW for t in types):
        pipeline = [t for t in pipeline if t.get('type') not in _DECODE_RAW
                    and not str(t.get('type')).endswith('Init')]
        idx = next(i for i, t in enumerate(pipeline)
                   if 'SampleFrames' in str(t.get('type')) or
                   'Sample' in str(t.get('type')))
        pipeline.insert(idx + 1, dict(type='DecordDecode'))
        pipeline.insert(0, dict(type='DecordInit'))
    for t in pipeline:
        if t.get('type') == 'PackActionInputs':
            keys = tuple(t.get('meta_keys', ('img_shape', 'img_key',
                                             'video_id', 'timestamp')))
            t['meta_keys'] = keys + tuple(k for k in EXTRA_META_KEYS
                                          if k not in keys)
    return pipeline


def load_video_sample(video: str, cfg: Config, label: int = -1,
                      max_frame_pixels: Optional[int] = None,
                      max_video_pixels: Optional[int] = None) -> VideoSample:
    """Decode ``video`` and run the test pipeline on it, tracing geometry.

    ``max_frame_pixels`` / ``max_video_pixels``: the decompression limits
    (default: the environment's, else :data:`MAX_FRAME_PIXELS` /
    :data:`MAX_VIDEO_PIXELS`; ``0``: none). A video shorter than a clip
    (the pipeline repeats frames) gives a one-line warning on stderr and
    in ``sample.warnings``, and ``sample.sampling`` says how many frames
    were repeated.

    Raises:
        InputError: missing, unreadable, corrupt or too large video.
        ConfigError: no test pipeline.
    """
    if not osp.isfile(video):
        raise InputError(f'video not found: {_shown(video)}')
    frame_limit = _limit(max_frame_pixels, FRAME_PIXELS_ENV,
                         MAX_FRAME_PIXELS)
    video_limit = _limit(max_video_pixels, VIDEO_PIXELS_ENV,
                         MAX_VIDEO_PIXELS)
    size = probe_frame_size(video)
    check_frame_size(video, size, frame_limit)
    from mmaction.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    from mmengine.registry import DefaultScope
    scope = DefaultScope.get_current_instance()
    scope_name = scope.scope_name if scope else 'mmaction'
    with DefaultScope.overwrite_default_scope(scope_name or 'mmaction'):
        transforms = Compose(test_pipeline_cfg(cfg)).transforms
    results = dict(filename=video, label=label, start_index=0,
                   modality='RGB')
    tracker = _GeometryTracker()
    meta = {}
    with captured_native_stderr() as log:
        try:
            results = _run_pipeline(video, transforms, results, tracker,
                                    size, video_limit, log, meta)
            reader = meta.pop('video_reader', None)
            fps = float(meta.get('avg_fps', 0) or 0)
            if not fps and reader is not None:
                fps = float(reader.get_avg_fps())
            del reader
        finally:
            decoder_log = '\n'.join(log.lines)
    data = pseudo_collate([results]) if 'inputs' in results else None
    if data is None:
        raise ConfigError('the test pipeline does not end with '
                          'PackActionInputs')
    sample = data['data_samples'][0]
    frame_inds = np.asarray(sample.metainfo.get(
        'frame_inds', meta.get('frame_inds', np.arange(0))))
    frame_inds = frame_inds.astype(np.int64).reshape(-1)
    total = int(meta.get('total_frames', 0) or 0)
    sampling = sampling_report(
        frame_inds, int(meta.get('clip_len', 1) or 1),
        int(meta.get('frame_interval', 1) or 1), total)
    warnings = []
    if sampling['frames_repeated']:
        warnings.append(short_video_warning(video, sampling))
        print(f'warning: {warnings[-1]}', file=sys.stderr)
    return VideoSample(
        data=data, frame_inds=frame_inds,
        original_shape=tuple(sample.metainfo.get(
            'original_shape', tracker.original_shape or (0, 0))),
        crops=tracker.crops(), fps=fps, total_frames=total,
        filename=video, sampling=sampling, warnings=warnings,
        decoder_log=decoder_log)


#: Kept from the pipeline's state before ``PackActionInputs`` drops it.
_SAMPLING_KEYS = ('total_frames', 'avg_fps', 'clip_len', 'num_clips',
                  'frame_interval', 'frame_inds')


def _run_pipeline(video, transforms, results, tracker, size, video_limit,
                  log, meta):
    for t in transforms:
        if isinstance(results, dict):
            meta.update({k: results[k] for k in _SAMPLING_KEYS
                         if k in results})
            if results.get('video_reader') is not None:
                meta['video_reader'] = results['video_reader']
        name = type(t).__name__
        if name.endswith('Decode') and 'frame_inds' in results:
            check_decode_budget(video, size,
                                np.asarray(results['frame_inds']).size,
                                video_limit)
        before = _shape_state(results)
        try:
            out = t(results)
        except Exception as e:  # decoders raise many kinds of errors
            if 'imgs' not in results:
                raise InputError(_read_error(video, e, log)) from e
            raise
        if out is None:
            raise InputError(f'the test pipeline dropped {_shown(video)}')
        results = out
        tracker.update(name, before, results)
    return results


def _shown(video) -> str:
    """A file name as it may be printed (no control characters)."""
    return sanitize_text(os.fspath(video), 0)


def _read_error(video, e: Exception, log) -> str:
    """``cannot read video X: Error: first line[; decoder: ...]``, every
    part sanitised (decoders quote the file's bytes)."""
    first = str(e).splitlines()[0] if str(e).strip() else ''
    msg = f'cannot read video {_shown(video)}: {type(e).__name__}'
    if first:
        msg += f': {sanitize_text(first, 120)}'
    said = log.summary(120)
    if said:
        msg += f' (decoder: {said})'
    return msg + '; check that it is a video file FFmpeg can decode'


def _limit(value: Optional[int], env: str, default: int) -> int:
    """A pixel limit from ``value``, else ``$env``, else ``default``
    (``0``: no limit). ``WxH`` is accepted for the environment value."""
    if value is not None:
        return int(value)
    text = os.environ.get(env, '').strip()
    if not text:
        return default
    try:
        if 'x' in text.lower():
            w, h = text.lower().split('x', 1)
            return int(w) * int(h)
        return int(float(text))
    except ValueError:
        raise InputError(f'{env}={sanitize_text(text, 40)!r} is not a '
                         'number of pixels; give an integer (e.g. '
                         f'{default}) or WxH (e.g. 8192x4320), 0 for no '
                         'limit') from None


def probe_frame_size(video: str) -> Optional[Tuple[int, int, int]]:
    """``(width, height, frames)`` from the container's stream header
    (OpenCV; nothing decoded is kept, the decoder's messages captured), or
    ``None`` where OpenCV cannot open the file (frames 0 if unknown)."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - cv2 comes with mmcv
        return None
    with captured_native_stderr('probe'):
        cap = cv2.VideoCapture(os.fspath(video))
        try:
            if not cap.isOpened():
                return None
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
    if w <= 0 or h <= 0:
        return None
    return w, h, max(0, n)


def _file_size(video: str) -> str:
    try:
        n = osp.getsize(video)
    except OSError:
        return '?'
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024


def _mp(pixels: float) -> str:
    return f'{pixels / 1e6:.1f} MP'


def check_frame_size(video: str, size: Optional[Tuple[int, int, int]],
                     limit: int) -> None:
    """Refuse frames of more than ``limit`` pixels (``0``: no limit).

    Raises:
        InputError: one line with the file, its size and the override.
    """
    if not size or not limit:
        return
    w, h, _ = size
    if w * h > limit:
        raise InputError(
            f'video {_shown(video)} ({_file_size(video)} on disk) has '
            f'{w}x{h} frames ({_mp(w * h)}), over the limit of '
            f'{_mp(limit)} a frame; if the file is trusted, raise the limit: '
            f'{FRAME_PIXELS_ENV}={w * h}')


def check_decode_budget(video: str, size: Optional[Tuple[int, int, int]],
                        frames: int, limit: int) -> None:
    """Refuse to decode ``frames`` frames at once when ``frames x width x
    height`` exceeds ``limit`` pixels (``0``: no limit).

    Raises:
        InputError: one line with the file, the sizes and the override.
    """
    if not size or not limit:
        return
    w, h, _ = size
    total = int(frames) * w * h
    if total > limit:
        raise InputError(
            f'video {_shown(video)} ({_file_size(video)} on disk): the test '
            f'pipeline would decode {frames} frames of {w}x{h} at once '
            f'({_mp(total)}, {total * 3 / 2 ** 30:.1f} GiB as RGB), over '
            f'the limit of {_mp(limit)}; if the file is trusted, raise the '
            f'limit ({VIDEO_PIXELS_ENV}={total}) or sample fewer frames')


def sampling_report(frame_inds: np.ndarray, clip_len: int,
                    frame_interval: int, total_frames: int) -> dict:
    """How a video's frames were sampled.

    A clip (``clip_len`` frames ``frame_interval`` apart) needs a span of
    ``(clip_len - 1) * frame_interval + 1`` frames; segment sampling
    (``clip_len`` 1, TSN) needs one distinct frame per segment. Where the
    video is shorter, the sampler repeats frames (``SampleFrames`` loops):
    ``frames_repeated`` counts the sampled frames that repeat one already
    in their clip (all segments together for segment sampling). Different
    clips overlapping is not counted.

    Returns:
        ``dict(video_frames, frames_needed, frames_sampled,
        frames_repeated, clip_len)``.
    """
    inds = np.asarray(frame_inds, dtype=np.int64).reshape(-1)
    clip_len = max(1, int(clip_len))
    group = clip_len if clip_len > 1 else max(1, len(inds))
    needed = (clip_len - 1) * max(1, int(frame_interval)) + 1 \
        if clip_len > 1 else len(inds)
    if len(inds) and len(inds) % group == 0:
        groups = inds.reshape(-1, group)
    else:
        groups = inds.reshape(1, -1)
    repeated = int(sum(len(g) - len(np.unique(g)) for g in groups))
    return dict(video_frames=int(total_frames), frames_needed=int(needed),
                frames_sampled=int(len(inds)), frames_repeated=repeated,
                clip_len=clip_len)


def short_video_warning(video: str, sampling: dict) -> str:
    """The one-line warning for a video shorter than a clip."""
    what = (f'a clip needs ({sampling["frames_needed"]})'
            if sampling.get('clip_len', 2) > 1 else
            f'its {sampling["frames_needed"]} segments need')
    return (f'video {_shown(video)} has {sampling["video_frames"]} frames, '
            f'fewer than {what}: {sampling["frames_repeated"]} of the '
            f'{sampling["frames_sampled"]} sampled frames are repeats (the '
            'test pipeline loops short videos)')


def _shape_state(results: dict):
    imgs = results.get('imgs')
    n = len(imgs) if isinstance(imgs, list) else None
    shape = tuple(imgs[0].shape[:2]) if n else None
    bbox = results.get('crop_bbox')
    return n, shape, None if bbox is None else np.array(bbox, copy=True)


class _GeometryTracker:
    """Follows resizes, crops and flips from the decoded frames onward."""

    def __init__(self):
        self.original_shape = None
        self.regions: Optional[List[List[float]]] = None  # per crop x1y1x2y2
        self.flips: List[bool] = []
        self.size = None  # current (h, w)

    def update(self, name: str, before, results: dict) -> None:
        n_before, shape_before, bbox_before = before
        n_after, shape_after, bbox_after = _shape_state(results)
        if shape_after is None:
            return
        if self.regions is None:  # first time frames appear: decoded
            h, w = shape_after
            self.original_shape = (h, w)
            self.regions, self.flips, self.size = [[0., 0., w, h]], [False], \
                (h, w)
            return
        new_bbox = bbox_after is not None and (
            bbox_before is None or bbox_before.shape != bbox_after.shape or
            not np.array_equal(bbox_before, bbox_after))
        if new_bbox:
            boxes = np.asarray(bbox_after, dtype=float).reshape(-1, 4)
            per_img = max(1, (n_after or 1) // max(1, n_before or 1))
            if per_img > 1:  # multi-crop: one box per output image
                step = max(1, len(boxes) // per_img)
                boxes = boxes[::step][:per_img]
            else:
                boxes = boxes[:1]
            base, base_flip = self.regions[0], self.flips[0]
            h, w = self.size
            regions, flips = [], []
            for k, (x1, y1, x2, y2) in enumerate(boxes):
                sx = (base[2] - base[0]) / w
                sy = (base[3] - base[1]) / h
                regions.append([base[0] + x1 * sx, base[1] + y1 * sy,
                                base[0] + x2 * sx, base[1] + y2 * sy])
                flips.append(base_flip ^ (name == 'TenCrop' and k % 2 == 1))
            self.regions, self.flips = regions, flips
        elif results.get('flip') and name == 'Flip':
            self.flips = [not f for f in self.flips]
        self.size = shape_after

    def crops(self) -> List[CropRegion]:
        if self.regions is None:
            return []
        return [CropRegion(tuple(r), f)
                for r, f in zip(self.regions, self.flips)]


def read_frames(video: str, indices: np.ndarray,
                max_side: Optional[int] = None) -> np.ndarray:
    """Original RGB frames ``[N, H, W, 3]`` uint8 at ``indices`` (decord),
    optionally downscaled so the longer side is at most ``max_side``.

    The decompression limits of :func:`load_video_sample` apply (the
    environment's); the decoder's native messages are captured."""
    size = probe_frame_size(video)
    check_frame_size(video, size, _limit(None, FRAME_PIXELS_ENV,
                                         MAX_FRAME_PIXELS))
    check_decode_budget(video, size, len(np.unique(np.asarray(indices))),
                        _limit(None, VIDEO_PIXELS_ENV, MAX_VIDEO_PIXELS))
    import decord
    with captured_native_stderr() as log:
        try:
            reader = decord.VideoReader(video, num_threads=1)
            idx = np.clip(np.asarray(indices, dtype=np.int64), 0,
                          len(reader) - 1)
            frames = reader.get_batch(list(idx)).asnumpy()
        except Exception as e:
            raise InputError(_read_error(video, e, log)) from e
    if max_side and max(frames.shape[1:3]) > max_side:
        import cv2
        scale = max_side / max(frames.shape[1:3])
        size = (max(1, round(frames.shape[2] * scale)),
                max(1, round(frames.shape[1] * scale)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                           for f in frames])
    return frames
