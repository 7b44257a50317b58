"""Spatio-temporal pointing game and temporal grounding, as test metrics.

Ground truth comes from each sample's metainfo (``PackActionInputs``
``meta_keys``), either input-aligned or in original video coordinates:

* ``gt_mask``: bool ``[T, H, W]`` (or ``[V, T, H, W]``) already at the model
  input's size; ``gt_frames``: bool ``[T]`` (or frame indices of the clip).
* ``gt_mask_path``: an ``.npz`` with ``mask`` ``[T0, H0, W0]`` over the whole
  video and optionally ``active_frames`` (original frame indices), as
  :class:`mmxai.datasets.SyntheticVideoDataset` provides. It is mapped onto
  each view with ``frame_inds`` and ``crop_quadruple``, so those keys must be
  in ``meta_keys`` too (single-crop views; one view per sampled clip).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import InputError
from ..registry import METRICS
from .base import ExplainedBatch, ExplanationMetric
from .functional import pointing_game, temporal_grounding

#: meta_keys a test pipeline's PackActionInputs needs for these metrics.
GT_META_KEYS = ('img_shape', 'img_key', 'video_id', 'timestamp', 'sample_idx',
                'frame_inds', 'crop_quadruple', 'gt_mask_path')


def _resize_nearest(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    if mask.shape[1:] == (h, w):
        return mask
    return np.stack([cv2.resize(m.astype(np.uint8), (w, h),
                                interpolation=cv2.INTER_NEAREST)
                     for m in mask]).astype(bool)


def _view_frames(meta: dict, views: int, t: int) -> List[np.ndarray]:
    inds = meta.get('frame_inds')
    if inds is None:
        raise InputError("ground truth in video coordinates needs 'frame_inds'"
                         ' in the test pipeline\'s PackActionInputs meta_keys')
    inds = np.asarray(inds).reshape(-1)
    if inds.size >= views * t:
        return [inds[v * t:(v + 1) * t] for v in range(views)]
    return [inds[:t]] * views


def load_ground_truth(meta: dict, shape: Tuple[int, int, int, int]
                      ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(masks [V, T, H, W] bool or None, frames [V, T] bool or None)`` of
    one sample whose maps are ``shape = (V, T, H, W)``."""
    v, t, h, w = shape
    masks = frames = None
    if meta.get('gt_mask') is not None:
        m = np.asarray(meta['gt_mask']).astype(bool)
        m = m if m.ndim == 4 else np.broadcast_to(m, (v, ) + m.shape)
        masks = np.stack([_resize_nearest(x, h, w) for x in m])
    if meta.get('gt_frames') is not None:
        f = np.asarray(meta['gt_frames']).reshape(-1)
        if f.dtype != bool:
            sel = np.zeros(t, bool)
            sel[f[(f >= 0) & (f < t)].astype(int)] = True
            f = sel
        frames = np.broadcast_to(f, (v, t)).copy()
    path = meta.get('gt_mask_path')
    if path is not None and (masks is None or frames is None):
        try:
            with np.load(path) as z:
                full = z['mask'].astype(bool) if 'mask' in z else None
                active = z['active_frames'] if 'active_frames' in z else None
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f'cannot read ground truth {path!r}: {e}') \
                from None
        per_view = _view_frames(meta, v, t)
        if masks is None and full is not None:
            t0, h0, w0 = full.shape
            x, y, cw, ch = np.asarray(
                meta.get('crop_quadruple', (0, 0, 1, 1)), float)
            rows = slice(int(round(y * h0)), int(round((y + ch) * h0)))
            cols = slice(int(round(x * w0)), int(round((x + cw) * w0)))
            masks = np.stack([
                _resize_nearest(full[np.clip(fi, 0, t0 - 1)][:, rows, cols],
                                h, w) for fi in per_view])
        if frames is None and active is not None:
            frames = np.stack([np.isin(fi, active) for fi in per_view])
    return masks, frames


def _label(ds) -> int:
    gt = getattr(ds, 'gt_label', None)
    try:
        return int(np.asarray(gt.cpu() if hasattr(gt, 'cpu') else gt)
                   .reshape(-1)[0])
    except (TypeError, IndexError, ValueError):
        return -1


def _class_mean(rows: List[dict], hit_key: str, miss_key: str) -> float:
    """Accuracy per class (hits / trials), averaged over classes."""
    per_class: Dict[int, List[int]] = {}
    for r in rows:
        acc = per_class.setdefault(r['label'], [0, 0])
        acc[0] += r[hit_key]
        acc[1] += r[hit_key] + r[miss_key]
    accs = [h / n for h, n in per_class.values() if n]
    return float(np.mean(accs)) if accs else float('nan')


@METRICS.register_module()
class PointingGame(ExplanationMetric):
    """Pointing game accuracy (Zhang et al. 2016) on video maps, and
    temporal grounding accuracy (Li et al.) where ground-truth frames exist.

    Args:
        tolerance: hit distance in pixels at ``tolerance_ref`` input size
            (15 px at 224); scaled to the model input's shorter side.
        mode: ``'frame'`` (one trial per annotated frame) or ``'volume'``
            (one per clip: the mean of the global-maximum voxels).
        temporal: also report temporal grounding.
    Reports ``<prefix>/pointing_game`` and ``<prefix>/temporal_grounding``
    (accuracies averaged over classes).
    """

    def __init__(self, tolerance: float = 15.0, tolerance_ref: int = 224,
                 mode: str = 'frame', temporal: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in ('frame', 'volume'):
            raise InputError(f"unknown pointing game mode '{mode}'")
        self.tolerance = float(tolerance)
        self.tolerance_ref = int(tolerance_ref)
        self.mode = mode
        self.temporal = temporal

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        maps = batch.explanation.maps.detach().float().cpu()
        rows = []
        for j, (idx, ds) in enumerate(zip(batch.indices, batch.data_samples)):
            v, t, h, w = maps[j].shape
            masks, frames = load_ground_truth(dict(ds.metainfo), (v, t, h, w))
            row = dict(index=idx, label=_label(ds), hits=0, misses=0,
                       t_hits=0, t_misses=0)
            tol = self.tolerance * min(h, w) / self.tolerance_ref
            for k in range(v):
                if masks is not None:
                    hit, miss = pointing_game(maps[j, k], masks[k], tol,
                                              self.mode)
                    row['hits'] += hit
                    row['misses'] += miss
                if self.temporal and frames is not None and frames[k].any():
                    ok = temporal_grounding(maps[j, k], frames[k])
                    row['t_hits' if ok else 't_misses'] += 1
            rows.append(row)
        return rows

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        out = {}
        if any(r['hits'] + r['misses'] for r in results):
            out['pointing_game'] = _class_mean(results, 'hits', 'misses')
        if self.temporal and any(r['t_hits'] + r['t_misses']
                                 for r in results):
            out['temporal_grounding'] = _class_mean(results, 't_hits',
                                                    't_misses')
        return out
