"""Minimal mask (REVEX, after Fong & Vedaldi 2017): the smallest share of
the clip that, taken in the map's ranking order, keeps the decision; as a
plain function and a test metric.

Units (cells or supervoxels) are ranked by attribution as for the
deletion / insertion curves (:func:`~.functional.pixel_ranks`). At step
``i`` of ``steps`` the top ``round(i N / steps)`` units of every view are
copied from the clip onto the baseline (``mode='insertion'``) or replaced by
it (``'deletion'``); the minimal mask is the voxel share of the first step
that meets the criterion:

* ``criterion='score'``: insertion: ``p_i >= th * p(x)``; deletion:
  ``p_i <= th * p(x)`` (``p`` the target's softmax probability;
  ``relative=False``: ``th`` itself, REVEX's ``MinMaskEvaluator``);
* ``criterion='class'``: insertion: the target is the arg-max again;
  deletion: it no longer is.

Steps are scored ``batch_size`` clips per forward, in order, and the search
stops at the first chunk where every threshold is met. A criterion never
met gives NaN.
"""
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..baselines import Baseline, check_baseline
from ..errors import MMXAIError
from ..registry import METRICS
from ..utils.model_state import preserved_model_state
from .base import ExplainedBatch, ExplanationMetric
from .functional import UNITS, get_adapter, ranked_units

__all__ = ['minimal_mask', 'MinimalMask', 'CRITERIA']

CRITERIA = ('score', 'class')


def _check(mode: str, criterion: str, steps: int, batch_size: int,
           unit: str, thresholds: Sequence[float]) -> None:
    if mode not in ('deletion', 'insertion'):
        raise MMXAIError(f"unknown mode '{mode}': deletion or insertion")
    if criterion not in CRITERIA:
        raise MMXAIError(f"unknown criterion '{criterion}': "
                         f"{', '.join(CRITERIA)}")
    if unit not in UNITS:
        raise MMXAIError(f"unknown unit '{unit}': {', '.join(UNITS)}")
    if steps < 1 or batch_size < 1:
        raise MMXAIError('steps and batch_size must be >= 1')
    if criterion == 'score' and not thresholds:
        raise MMXAIError('the score criterion needs at least one threshold')


def minimal_mask(model_or_adapter: Union[nn.Module, object],
                 inputs: Tensor,
                 maps: Tensor,
                 target: Union[int, Sequence[int], Tensor],
                 thresholds: Sequence[float] = (0.9, ),
                 criterion: str = 'score',
                 relative: bool = True,
                 mode: str = 'insertion',
                 steps: int = 100,
                 unit: str = 'cell',
                 cell_size: Sequence[int] = (1, 16, 16),
                 baseline: Baseline = 'blur',
                 blur_sigma: float = 10.0,
                 n_segments: int = 200,
                 batch_size: int = 16,
                 segments: Union[Tensor, None] = None) -> Tensor:
    """Minimal mask shares (module docstring).

    Args:
        model_or_adapter: a recognizer or its mmxai adapter.
        inputs: preprocessed model inputs (B samples).
        maps: ``[B, V, T, H, W]`` or ``[B, T, H, W]`` attributions.
        target: one class, or ``[B]`` classes.
        thresholds: score thresholds (``criterion='score'``), fractions of
            the clean probability (``relative``) or probabilities.
        steps: the share's resolution is ``1 / steps`` of the units.
        unit, cell_size, n_segments, segments: the ranked units, as for
            :func:`~.functional.deletion_insertion_curve`.
        baseline, blur_sigma: the removal value (:mod:`mmxai.baselines`;
            a number ``blur_sigma``: each frame blurred, in pixels).
    Returns:
        ``[B, len(thresholds)]`` (``criterion='class'``: ``[B, 1]``) voxel
        shares in [0, 1], NaN where the criterion is never met.
    """
    thresholds = [float(t) for t in thresholds]
    _check(mode, criterion, steps, batch_size, unit, thresholds)
    check_baseline(baseline)
    n_crit = len(thresholds) if criterion == 'score' else 1
    adapter = get_adapter(model_or_adapter)
    with preserved_model_state(adapter.model), torch.inference_mode():
        adapter.model.eval()
        video = adapter.to_video(inputs.detach())
        b_n, v_n, _, t, h, w = video.shape
        maps, targets, base, ranks, counts = ranked_units(
            video, maps, target, baseline, blur_sigma, unit, cell_size,
            n_segments, segments)
        clean = adapter.scores(inputs).float().softmax(-1)
        out = torch.full((b_n, n_crit), float('nan'))
        step_ids = torch.arange(steps + 1, device=video.device)
        for i in range(b_n):
            cls = int(targets[i])
            limits = torch.tensor(thresholds) * (
                float(clean[i, cls]) if relative else 1.0)
            # units taken per step and view [S + 1, V]
            k = torch.round(step_ids.view(-1, 1).double() *
                            counts[i].view(1, -1).double() / steps).long()
            for s0 in range(0, steps + 1, batch_size):
                ks = k[s0:s0 + batch_size]
                mask = ranks[i].unsqueeze(0) < ks.view(*ks.shape, 1, 1, 1)
                share = mask.float().mean((1, 2, 3, 4)).cpu()  # [n]
                mask = mask.unsqueeze(2)  # [n, V, 1, T, H, W]
                if mode == 'deletion':
                    x = torch.where(mask, base[i], video[i])
                else:
                    x = torch.where(mask, video[i], base[i])
                probs = adapter.scores(adapter.from_video(x)).float() \
                    .softmax(-1).cpu()
                if criterion == 'class':
                    top1 = probs.argmax(-1) == cls
                    met = (top1 if mode == 'insertion' else ~top1)[:, None]
                else:
                    p = probs[:, cls:cls + 1]
                    met = p >= limits if mode == 'insertion' \
                        else p <= limits
                for c in range(n_crit):
                    hit = met[:, c].nonzero()
                    if torch.isnan(out[i, c]) and len(hit):
                        out[i, c] = share[int(hit[0])]
                if not torch.isnan(out[i]).any():
                    break
    return out


@METRICS.register_module()
class MinimalMask(ExplanationMetric):
    """Minimal mask (REVEX): the smallest share of the clip, added
    (``mode='insertion'``) or removed (``'deletion'``) in the map's ranking
    order, that reaches the score threshold or keeps (loses) the class.
    Needs ``mmxai.ExplainHook`` in ``custom_hooks``.

    Args: those of :func:`minimal_mask` (``thresholds``, ``criterion``,
    ``relative``, ``mode``, ``steps``, ``unit``, ``cell_size``,
    ``baseline``, ``blur_sigma``, ``n_segments``, ``batch_size``).
    Reports ``<prefix>/minimal_mask_<th>`` per threshold (``'class'``:
    ``minimal_mask_class``): the mean share over the samples that reach
    it (lower is better), and ``..._reached``, the fraction that do.
    """

    def __init__(self, thresholds: Sequence[float] = (0.9, ),
                 criterion: str = 'score', relative: bool = True,
                 mode: str = 'insertion', steps: int = 100,
                 unit: str = 'cell', cell_size: Sequence[int] = (1, 16, 16),
                 baseline: Baseline = 'blur', blur_sigma: float = 10.0,
                 n_segments: int = 200, batch_size: int = 16,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        thresholds = (thresholds, ) if isinstance(thresholds, (int, float)) \
            else tuple(float(t) for t in thresholds)
        _check(mode, criterion, int(steps), int(batch_size), unit,
               thresholds)
        check_baseline(baseline)
        self.keys = [f'minimal_mask_{t:g}' for t in thresholds] \
            if criterion == 'score' else ['minimal_mask_class']
        self.options = dict(thresholds=thresholds, criterion=criterion,
                            relative=bool(relative), mode=mode,
                            steps=int(steps), unit=unit,
                            cell_size=tuple(cell_size), baseline=baseline,
                            blur_sigma=float(blur_sigma),
                            n_segments=int(n_segments),
                            batch_size=int(batch_size))

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        exp = batch.explanation
        shares = minimal_mask(batch.adapter, batch.inputs, exp.maps,
                              exp.targets, **self.options)
        return [dict(index=i, **{k: float(v) for k, v in zip(self.keys, s)})
                for i, s in zip(batch.indices, shares)]

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        if not results:
            return out
        for key in self.keys:
            vals = np.array([r[key] for r in results], dtype=float)
            reached = ~np.isnan(vals)
            out[key] = float(vals[reached].mean()) if reached.any() \
                else float('nan')
            out[key + '_reached'] = float(reached.mean())
        return out
