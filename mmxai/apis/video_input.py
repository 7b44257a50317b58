"""Run a config's own test pipeline on a video file and keep the geometry
needed to map explanation maps back onto the original frames."""
import copy
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate

from ..errors import ConfigError, InputError

#: Kept by PackActionInputs in addition to its defaults.
EXTRA_META_KEYS = ('frame_inds', 'original_shape', 'num_clips', 'clip_len',
                   'filename')
_DECODE_RAW = ('RawFrameDecode', )


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
    """
    data: dict
    frame_inds: np.ndarray
    original_shape: Tuple[int, int]
    crops: List[CropRegion] = field(default_factory=list)
    fps: float = 0.0
    total_frames: int = 0
    filename: str = ''


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


def load_video_sample(video: str, cfg: Config,
                      label: int = -1) -> VideoSample:
    """Decode ``video`` and run the test pipeline on it, tracing geometry.

    Raises:
        InputError: missing, unreadable or corrupt video.
        ConfigError: no test pipeline.
    """
    if not osp.isfile(video):
        raise InputError(f'video not found: {video}')
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
    for t in transforms:
        before = _shape_state(results)
        try:
            out = t(results)
        except Exception as e:  # decoders raise many kinds of errors
            if 'imgs' not in results:
                raise InputError(f'cannot read video {video}: '
                                 f'{type(e).__name__}: '
                                 f'{str(e).splitlines()[0] if str(e) else ""}'
                                 .rstrip(': ')) from e
            raise
        if out is None:
            raise InputError(f'the test pipeline dropped {video}')
        results = out
        tracker.update(type(t).__name__, before, results)
    reader = results.get('video_reader')
    fps = float(results.get('avg_fps', 0) or 0)
    if not fps and reader is not None:
        fps = float(reader.get_avg_fps())
    data = pseudo_collate([results]) if 'inputs' in results else None
    if data is None:
        raise ConfigError('the test pipeline does not end with '
                          'PackActionInputs')
    sample = data['data_samples'][0]
    frame_inds = np.asarray(sample.metainfo.get('frame_inds',
                                                np.arange(0)))
    return VideoSample(
        data=data, frame_inds=frame_inds.astype(np.int64).reshape(-1),
        original_shape=tuple(sample.metainfo.get(
            'original_shape', tracker.original_shape or (0, 0))),
        crops=tracker.crops(), fps=fps,
        total_frames=int(results.get('total_frames', 0) or 0),
        filename=video)


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
    optionally downscaled so the longer side is at most ``max_side``."""
    import decord
    try:
        reader = decord.VideoReader(video, num_threads=1)
        idx = np.clip(np.asarray(indices, dtype=np.int64), 0,
                      len(reader) - 1)
        frames = reader.get_batch(list(idx)).asnumpy()
    except Exception as e:
        raise InputError(f'cannot read video {video}: {e}') from e
    if max_side and max(frames.shape[1:3]) > max_side:
        import cv2
        scale = max_side / max(frames.shape[1:3])
        size = (max(1, round(frames.shape[2] * scale)),
                max(1, round(frames.shape[1] * scale)))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA)
                           for f in frames])
    return frames
