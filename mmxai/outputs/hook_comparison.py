"""The dataset-scale method comparison of ``ExplainHook``: ``compare.json``
and ``compare.md`` at the end of a test run with several explainers.

Every number comes from the registered metrics of ``test_evaluator`` (their
per-method statistics, :mod:`mmxai.evaluation.method_stats`); here they are
only ranked and written (atomically, :mod:`mmxai.fileio`).

``compare.json``::

    methods        the methods that explained samples, in config order
    metrics        {'<prefix>/<key>': dict(better='lower'|'higher'|None,
                    ranking=[method, ...] (best first; None: unranked),
                    methods={method: dict(value, mean, std, ci95, n, rank,
                    per_sample={index: value})})}
    not_applicable {method: reason}   methods that do not apply to the model
    failures       [dict(index, method, error)]   one line per failure
    samples        number of explained samples; interval: how ci95 is made
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

from ..fileio import atomic_path, write_json

__all__ = ['HOOK_COMPARE_FILES', 'BETTER', 'better_of', 'hook_comparison',
           'write_hook_comparison', 'hook_comparison_markdown']

HOOK_COMPARE_FILES = dict(json='compare.json', md='compare.md')
INTERVAL = ("Student's t, 95 %: mean -/+ t(0.975, n-1) * s / sqrt(n) over "
            'the per-sample values (compute_metrics of one sample)')

#: which way each registered metric key is better (unknown keys: unranked)
BETTER = dict(
    deletion_auc='lower', insertion_auc='higher', average_drop='lower',
    increase_rate='higher', pointing_game='higher',
    temporal_grounding='higher', randomization_spearman='lower',
    randomization_spearman_head='lower', randomization_passed='higher',
    mask_iou='higher', minimal_mask_class='lower')


def better_of(key: str) -> Optional[str]:
    """``'lower'``, ``'higher'`` or None for metric key ``key`` (any
    prefix)."""
    name = key.rsplit('/', 1)[-1]
    if name in BETTER:
        return BETTER[name]
    if name.startswith('minimal_mask_'):  # share (lower), reached (higher)
        return 'higher' if name.endswith('_reached') else 'lower'
    return None


def hook_comparison(methods: Sequence[str],
                    metric_stats: Dict[str, Dict[str, Dict[str, Any]]],
                    not_applicable: Dict[str, str],
                    failures: List[dict], samples: int,
                    settings: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, Any]:
    """The content of ``compare.json``.

    Args:
        metric_stats: ``{'<prefix>/<key>': {method: stats}}`` with the
            stats of :func:`~mmxai.evaluation.method_stats.
            method_metric_stats` (``value`` ranks the methods).
    """
    metrics: Dict[str, Any] = {}
    for key, per in metric_stats.items():
        better = better_of(key)
        entry = dict(better=better, ranking=None, methods={})
        for m in methods:
            if m in per:
                entry['methods'][m] = dict(per[m])
        scored = [m for m, st in entry['methods'].items()
                  if isinstance(st.get('value'), (int, float))]
        if better is not None and scored:
            ranking = sorted(scored, key=lambda m: entry['methods'][m][
                'value'] * (1 if better == 'lower' else -1))
            entry['ranking'] = ranking
            for r, m in enumerate(ranking):
                entry['methods'][m]['rank'] = r + 1
        metrics[key] = entry
    return dict(methods=list(methods), samples=int(samples),
                metrics=metrics, not_applicable=dict(not_applicable),
                failures=list(failures), interval=INTERVAL,
                settings=settings or {})


def _fmt(x: Any, d: int = 4) -> str:
    return '-' if not isinstance(x, (int, float)) else f'{x:.{d}g}'


def hook_comparison_markdown(summary: Dict[str, Any]) -> str:
    """``compare.md``: a table per metric (rank, value, 95 % interval, n)
    and the methods that did not apply or failed."""
    lines = ['# Method comparison over the test set', '',
             f"{summary['samples']} samples explained; methods: "
             f"{', '.join(summary['methods']) or 'none'}. Intervals: "
             f"{summary['interval']}.", '']
    for key, entry in summary['metrics'].items():
        better = entry['better']
        lines += [f'## {key} ({better or "direction unknown"}'
                  f'{" is better" if better else ""})', '',
                  '| rank | method | value | mean | 95 % CI | n |',
                  '|---|---|---|---|---|---|']
        order = entry['ranking'] or list(entry['methods'])
        for m in order:
            st = entry['methods'][m]
            ci = st.get('ci95')
            ci_s = '-' if not ci else f'[{_fmt(ci[0])}, {_fmt(ci[1])}]'
            lines.append(f"| {st.get('rank', '-')} | {m} | "
                         f"{_fmt(st.get('value'))} | {_fmt(st.get('mean'))} "
                         f"| {ci_s} | {st.get('n', '-')} |")
        lines.append('')
    if summary['not_applicable']:
        lines += ['## Not applicable', '']
        lines += [f'- {m}: {r}' for m, r in summary['not_applicable'].items()]
        lines.append('')
    if summary['failures']:
        lines += ['## Failures', '']
        lines += [f"- sample {f['index']}, {f['method']}: {f['error']}"
                  for f in summary['failures']]
        lines.append('')
    return '\n'.join(lines)


def write_hook_comparison(root: str, summary: Dict[str, Any]
                          ) -> Dict[str, str]:
    """Write ``compare.json`` and ``compare.md`` under ``root``
    (atomically); returns ``{kind: path}``."""
    paths = {k: osp.join(root, v) for k, v in HOOK_COMPARE_FILES.items()}
    write_json(paths['json'], summary)
    with atomic_path(paths['md']) as tmp:
        with open(tmp, 'w') as f:
            f.write(hook_comparison_markdown(summary))
    return paths
