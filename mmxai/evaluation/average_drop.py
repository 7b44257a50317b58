"""Average drop / increase in confidence, as a test metric."""
from typing import Dict, List

import numpy as np

from ..registry import METRICS
from .base import ExplainedBatch, ExplanationMetric
from .functional import average_drop


@METRICS.register_module()
class AverageDrop(ExplanationMetric):
    """Average drop (lower is better) and increase rate (higher is better):
    the target's probability on ``map * x + (1 - map) * blur(x)`` against the
    clip's. Needs ``mmxai.ExplainHook`` in ``custom_hooks``.

    Args:
        blur_sigma: Gaussian blur of the background, in pixels.
    Reports ``<prefix>/average_drop`` (percent) and
    ``<prefix>/increase_rate`` (fraction of samples).
    """

    def __init__(self, blur_sigma: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blur_sigma = float(blur_sigma)

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        exp = batch.explanation
        drop, inc = average_drop(batch.adapter, batch.inputs, exp.maps,
                                 exp.targets, blur_sigma=self.blur_sigma)
        return [dict(index=i, drop=float(d), increase=bool(u))
                for i, d, u in zip(batch.indices, drop, inc)]

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            return {}
        return dict(
            average_drop=float(np.mean([r['drop'] for r in results])),
            increase_rate=float(np.mean([r['increase'] for r in results])))
