"""Agreement between explanation methods: the Spearman rank correlation of
their maps of the same sample, and its mean over samples.

One implementation for ``tools/compare.py`` (per clip) and
:class:`~mmxai.engine.ExplainHook` with several explainers (per test
sample): for methods ``a``, ``b`` and sample ``i``,
``rho_ab(i) = spearman(maps_a[i], maps_b[i])`` over all ``V * T * H * W``
values (:func:`~.sanity.rank_correlation`; ``rho_aa = 1``); the matrix
reported is ``mean_i rho_ab(i)`` over the samples both methods explained.
"""
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from .sanity import rank_correlation

__all__ = ['agreement_matrix', 'mean_agreement', 'matrix_of', 'pair']


def agreement_matrix(maps: Mapping[str, Any]) -> np.ndarray:
    """``[M, M]`` Spearman correlations between the maps of one sample
    (``{method: map}``, any equal shape, e.g. ``[V, T, H, W]``), in the
    mapping's order; symmetric, ones on the diagonal."""
    names = list(maps)
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = rank_correlation(maps[a],
                                                     maps[names[j]])
    return out


def mean_agreement(names: Sequence[str],
                   per_sample: Iterable[Mapping[str, Any]],
                   digits: Optional[int] = 4) -> Dict[str, Any]:
    """Mean over samples of each pair's correlation.

    Args:
        names: the methods of the result, in order.
        per_sample: one ``dict(methods=[...], matrix=[[...]])`` per sample
            (the methods that explained it; NaN / None entries skipped).
    Returns:
        ``dict(methods=names, matrix=[[mean or None]], samples=[[count]])``.
    """
    names = list(names)
    pos = {n: k for k, n in enumerate(names)}
    acc = np.zeros((len(names), len(names)))
    cnt = np.zeros_like(acc)
    for s in per_sample:
        ms = list(s['methods'])
        mat = np.asarray([[np.nan if x is None else x for x in r]
                          for r in s['matrix']], float).reshape(
                              len(ms), len(ms))
        for i, a in enumerate(ms):
            for j, b in enumerate(ms):
                if a in pos and b in pos and np.isfinite(mat[i, j]):
                    acc[pos[a], pos[b]] += mat[i, j]
                    cnt[pos[a], pos[b]] += 1
    mean = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)

    def num(x: float) -> Optional[float]:
        if not np.isfinite(x):
            return None
        return float(x) if digits is None else round(float(x), digits)
    return dict(methods=names, matrix=[[num(x) for x in r] for r in mean],
                samples=cnt.astype(int).tolist())


def matrix_of(agreement: Mapping[str, Any]) -> np.ndarray:
    """The ``matrix`` of an agreement dict as floats (None -> NaN)."""
    return np.array([[np.nan if x is None else x for x in r]
                     for r in agreement['matrix']], float).reshape(
                         len(agreement['methods']),
                         len(agreement['methods']))


def pair(agreement: Optional[Mapping[str, Any]], a: str, b: str
         ) -> Optional[float]:
    """The mean correlation of methods ``a`` and ``b`` (None if unknown)."""
    if not agreement or a not in agreement.get('methods', ()) or \
            b not in agreement['methods']:
        return None
    ms: List[str] = list(agreement['methods'])
    x = agreement['matrix'][ms.index(a)][ms.index(b)]
    return None if x is None or not np.isfinite(x) else float(x)
