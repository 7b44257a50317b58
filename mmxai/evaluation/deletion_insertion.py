"""Deletion and insertion AUC of video explanations, as a test metric."""
from typing import Dict, List, Sequence

import numpy as np

from ..baselines import Baseline, check_baseline
from ..errors import MMXAIError
from ..registry import METRICS
from .base import ExplainedBatch, ExplanationMetric
from .functional import UNITS, deletion_insertion_curve


@METRICS.register_module()
class DeletionInsertionAUC(ExplanationMetric):
    """Mean deletion / insertion AUC (Petsiuk et al.; Li et al. for video).

    Lower deletion and higher insertion AUC are better. Needs
    ``mmxai.ExplainHook`` in ``custom_hooks`` (it supplies the maps).

    Args:
        modes: any of ``'deletion'``, ``'insertion'``.
        steps: curve steps (the curve costs ``steps + 1`` forwards per
            sample, ``batch_size`` at a time).
        unit: ``'cell'`` (``cell_size = (t, h, w)`` pixels) or
            ``'supervoxel'`` (SLIC with ``n_segments``).
        baseline: the removal value (:mod:`mmxai.baselines`): ``'fade'``
            (0 after normalisation), ``'blur'`` (each frame blurred,
            ``blur_sigma`` px), ...
        batch_size: perturbed clips per forward.
        keep_curves: also report the mean curves (lists) as
            ``deletion_curve`` / ``insertion_curve``.
    Reports ``<prefix>/deletion_auc`` and ``<prefix>/insertion_auc``.
    """

    def __init__(self, modes: Sequence[str] = ('deletion', 'insertion'),
                 steps: int = 16, unit: str = 'cell',
                 cell_size: Sequence[int] = (1, 16, 16),
                 baseline: Baseline = 'fade', blur_sigma: float = 10.0,
                 n_segments: int = 200, batch_size: int = 16,
                 keep_curves: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        modes = (modes, ) if isinstance(modes, str) else tuple(modes)
        bad = [m for m in modes if m not in ('deletion', 'insertion')]
        if bad or not modes:
            raise MMXAIError(f'unknown mode {bad}: deletion, insertion')
        if unit not in UNITS:
            raise MMXAIError(f"unknown unit '{unit}': {', '.join(UNITS)}")
        check_baseline(baseline)
        self.modes = modes
        self.options = dict(steps=int(steps), unit=unit,
                            cell_size=tuple(cell_size), baseline=baseline,
                            blur_sigma=float(blur_sigma),
                            n_segments=int(n_segments),
                            batch_size=int(batch_size))
        self.keep_curves = keep_curves

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        exp = batch.explanation
        rows = [dict(index=i) for i in batch.indices]
        for mode in self.modes:
            curve, area = deletion_insertion_curve(
                batch.adapter, batch.inputs, exp.maps, exp.targets,
                mode=mode, **self.options)
            for r, c, a in zip(rows, curve, area):
                r[mode] = float(a)
                r[mode + '_curve'] = c.numpy()
        return rows

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        if not results:
            return out
        for mode in self.modes:
            out[f'{mode}_auc'] = float(np.mean([r[mode] for r in results]))
            if self.keep_curves:
                out[f'{mode}_curve'] = np.mean(
                    [r[mode + '_curve'] for r in results], 0).round(5).tolist()
        return out
