"""IoU of a thresholded map with a ground-truth mask (REVEX), as a plain
function and a test metric.

REVEX (Gaya-Morey et al. 2024, ``IOUEvaluator``) stretches the map to
[0, 1] (min-max over the clip), keeps the voxels above ``0.9`` and reports
the Jaccard index with the ground-truth mask. ``top`` instead keeps a fixed
share of the voxels (the largest values), independent of the map's scale.
Ground truth is read as the pointing game reads it
(:func:`~mmxai.evaluation.pointing.load_ground_truth`).
"""
import math
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import MMXAIError
from ..registry import METRICS
from ..utils.normalize import minmax_normalize
from .base import ExplainedBatch, ExplanationMetric
from .pointing import load_ground_truth

__all__ = ['threshold_map', 'mask_iou', 'MaskIoU']


def _check_options(threshold: float, top: Optional[float]) -> None:
    if top is not None and not 0 < float(top) <= 1:
        raise MMXAIError(f'top must be a share in (0, 1], got {top}')
    if top is None and not 0 <= float(threshold) < 1:
        raise MMXAIError(f'threshold must be in [0, 1), got {threshold}')


def threshold_map(maps, threshold: float = 0.9,
                  top: Optional[float] = None) -> Tensor:
    """Bool mask of the map's salient voxels, same shape as ``maps``.

    ``top=None``: ``minmax(M) > threshold`` (min-max over the whole map; a
    constant map selects nothing). ``top=q``: the ``ceil(q N)`` voxels of
    largest value (ties by position).
    """
    _check_options(threshold, top)
    m = torch.as_tensor(maps).detach().float().cpu()
    if top is not None:
        k = max(1, math.ceil(float(top) * m.numel()))
        order = torch.argsort(-m.flatten(), stable=True)
        out = torch.zeros(m.numel(), dtype=torch.bool)
        out[order[:k]] = True
        return out.view(m.shape)
    return minmax_normalize(m, dims=m.dim()) > float(threshold)


def mask_iou(maps, masks, threshold: float = 0.9,
             top: Optional[float] = None) -> float:
    """``|P & G| / |P | G|`` of ``P = threshold_map(maps, threshold, top)``
    and the ground truth ``G`` (bool, same shape, e.g. ``[T, H, W]``).

    Raises :class:`MMXAIError` when ``G`` is empty (IoU undefined there).
    """
    pred = threshold_map(maps, threshold, top)
    gt = torch.as_tensor(masks).bool().cpu()
    if pred.shape != gt.shape:
        raise MMXAIError(f'map {tuple(pred.shape)} and mask '
                         f'{tuple(gt.shape)} must have the same shape')
    if not gt.any():
        raise MMXAIError('the ground-truth mask is empty: IoU is undefined')
    return float((pred & gt).sum()) / float((pred | gt).sum())


@METRICS.register_module()
class MaskIoU(ExplanationMetric):
    """IoU of the thresholded map with the ground-truth mask (REVEX).

    Each view with a non-empty mask is one trial (maps ``[T, H, W]`` of
    ``explanation.maps``); a sample's score is the mean over its views,
    samples without ground truth are skipped. Needs ``mmxai.ExplainHook``
    and ground truth as for :class:`~mmxai.evaluation.PointingGame`.

    Args:
        threshold: keep ``minmax(map) > threshold`` (REVEX: 0.9).
        top: instead keep this share of the voxels (largest values).
    Reports ``<prefix>/mask_iou`` (mean over samples).
    """

    def __init__(self, threshold: float = 0.9, top: Optional[float] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        _check_options(threshold, top)
        self.threshold = float(threshold)
        self.top = None if top is None else float(top)

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        maps = batch.explanation.maps.detach().float().cpu()
        rows = []
        for j, (idx, ds) in enumerate(zip(batch.indices, batch.data_samples)):
            masks, _ = load_ground_truth(dict(ds.metainfo),
                                         tuple(maps[j].shape))
            if masks is None:
                continue
            ious = [mask_iou(maps[j, k], masks[k], self.threshold, self.top)
                    for k in range(maps.shape[1]) if masks[k].any()]
            if ious:
                rows.append(dict(index=idx, iou=float(np.mean(ious))))
        return rows

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            return {}
        return dict(mask_iou=float(np.mean([r['iou'] for r in results])))
