"""Per-method values of one registered metric, with a 95 % t-interval.

When :class:`~mmxai.engine.ExplainHook` runs several explainers, every
:class:`~.base.ExplanationMetric` scores each method's maps with its own
``evaluate_batch`` and reduces each method's rows with its own
``compute_metrics`` (one implementation). This module adds the spread:

* ``value``: ``compute_metrics(rows)`` of the method (the registered number);
* per sample ``x_i``: ``compute_metrics([row_i])`` of each scalar key;
* ``mean`` = mean of ``x_i`` (equals ``value`` for the metrics that are
  means over samples: deletion / insertion AUC, average drop, ...);
* ``ci95`` = ``mean -/+ t_{0.975, n-1} * s / sqrt(n)`` (Student's t
  interval, ``s`` the sample standard deviation, ``ddof=1``); None for
  ``n < 2``.
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ['t_interval', 'method_metric_stats', 'METHOD_KEY']

#: row key under which a sample's rows of every method are stored.
METHOD_KEY = '_mmxai_methods'


def t_interval(values: Sequence[float], level: float = 0.95
               ) -> Optional[List[float]]:
    """Student's t confidence interval of the mean of ``values``:
    ``mean -/+ t_{(1+level)/2, n-1} * std(ddof=1) / sqrt(n)``; None for
    fewer than two finite values."""
    x = np.asarray([v for v in values if v is not None and
                    math.isfinite(v)], dtype=np.float64)
    if x.size < 2:
        return None
    from scipy.stats import t as student_t
    half = float(student_t.ppf(0.5 + level / 2, x.size - 1) *
                 x.std(ddof=1) / math.sqrt(x.size))
    mean = float(x.mean())
    return [mean - half, mean + half]


def _scalar(v: Any) -> Optional[float]:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return None


def method_metric_stats(compute: Callable[[List[dict]], Dict[str, Any]],
                        rows: List[dict]) -> Dict[str, Dict[str, Any]]:
    """``{key: dict(value, mean, ci95, std, n, per_sample)}`` of one method.

    Args:
        compute: the metric's own ``compute_metrics``.
        rows: the method's result rows (one or more per sample, each with
            ``index``), as the metric's ``evaluate_batch`` made them.
    Non-scalar keys (curves) keep only ``value``.
    """
    value = compute(rows) if rows else {}
    by_sample: Dict[Any, List[dict]] = {}
    for j, r in enumerate(rows):
        by_sample.setdefault(r.get('index', ('row', j)), []).append(r)
    per_sample: Dict[str, List[Optional[float]]] = {}
    indices = list(by_sample)
    for idx in indices:
        try:
            one = compute(by_sample[idx])
        except Exception:  # noqa: BLE001 - a metric defined on sets only
            one = {}
        for k in value:
            per_sample.setdefault(k, []).append(_scalar(one.get(k)))
    out: Dict[str, Dict[str, Any]] = {}
    for k, v in value.items():
        if _scalar(v) is None:
            out[k] = dict(value=v)
            continue
        xs = per_sample.get(k, [])
        finite = [x for x in xs if x is not None and math.isfinite(x)]
        out[k] = dict(
            value=_scalar(v),
            mean=float(np.mean(finite)) if finite else None,
            std=float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
            ci95=t_interval(finite), n=len(finite),
            per_sample=dict(zip([int(i) if isinstance(i, (int, np.integer))
                                 else str(i) for i in indices], xs)))
    return out
