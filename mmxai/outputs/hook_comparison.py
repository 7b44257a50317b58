"""The dataset-scale method comparison of ``ExplainHook``: ``compare.json``,
``compare.md`` and ``agreement.png`` at the end of a test run with several
explainers.

Every metric number comes from the registered metrics of ``test_evaluator``
(their per-method statistics, :mod:`mmxai.evaluation.method_stats`); the
random-map baseline from the same metric instances on a seeded uniform
random map per sample; time, peak memory and agreement from the hook's
per-sample values (gathered from every process). Here they are only
reduced, ranked, turned into the recommendation
(:func:`mmxai.evaluation.recommendation.recommend_hook`, the same rules as
``tools/compare.py``) and written (atomically, :mod:`mmxai.fileio`).

``compare.json``::

    methods        the methods that explained samples, in config order
    metrics        {'<prefix>/<key>': dict(better='lower'|'higher'|None,
                    ranking=[method, ...] (best first; None: unranked),
                    methods={method: dict(value, mean, std, ci95, n, rank,
                    per_sample={index: value})},
                    random=dict(value, mean, std, ci95, n, per_sample) or
                    None (the random map; not ranked))}
                   '<prefix>/faithfulness' (derived where both curves are
                    measured): per sample insertion - deletion AUC
    timing         {method: dict(seconds_per_sample, seconds_total, samples,
                    peak_mib, per_sample={index: seconds})}
    agreement      dict(methods, matrix (mean Spearman over the samples
                    both explained), samples (how many, per pair))
    recommendation [line, ...]
    random_baseline dict(seed, metrics, map)   how the random map is made
    sanity         dict(cascade, threshold) of ModelRandomization, or None
    not_applicable {method: reason}   methods that do not apply to the model
    failures       [dict(index, method, error)]   one line per failure
    samples        number of explained samples; interval: how ci95 is made
"""
import math
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..evaluation.agreement import matrix_of, mean_agreement
from ..evaluation.method_stats import t_interval
from ..evaluation.recommendation import recommend_hook
from ..fileio import atomic_path, write_json

__all__ = ['HOOK_COMPARE_FILES', 'BETTER', 'better_of', 'hook_comparison',
           'write_hook_comparison', 'hook_comparison_markdown',
           'timing_summary', 'faithfulness_stats']

HOOK_COMPARE_FILES = dict(json='compare.json', md='compare.md',
                          agreement='agreement.png')
INTERVAL = ("Student's t, 95 %: mean -/+ t(0.975, n-1) * s / sqrt(n) over "
            'the per-sample values (compute_metrics of one sample)')

#: which way each registered metric key is better (unknown keys: unranked)
BETTER = dict(
    deletion_auc='lower', insertion_auc='higher', average_drop='lower',
    increase_rate='higher', pointing_game='higher',
    temporal_grounding='higher', randomization_spearman='lower',
    randomization_spearman_head='lower', randomization_passed='higher',
    mask_iou='higher', minimal_mask_class='lower', faithfulness='higher')


def better_of(key: str) -> Optional[str]:
    """``'lower'``, ``'higher'`` or None for metric key ``key`` (any
    prefix)."""
    name = key.rsplit('/', 1)[-1]
    if name in BETTER:
        return BETTER[name]
    if name.startswith('minimal_mask_'):  # share (lower), reached (higher)
        return 'higher' if name.endswith('_reached') else 'lower'
    return None


def _stats(per_sample: Mapping[str, Optional[float]]) -> Dict[str, Any]:
    """``dict(value, mean, std, ci95, n, per_sample)`` of per-sample
    values (the form of :func:`~mmxai.evaluation.method_stats.
    method_metric_stats`)."""
    xs = [v for v in per_sample.values()
          if v is not None and math.isfinite(v)]
    mean = float(np.mean(xs)) if xs else None
    return dict(value=mean, mean=mean,
                std=float(np.std(xs, ddof=1)) if len(xs) > 1 else None,
                ci95=t_interval(xs), n=len(xs), per_sample=dict(per_sample))


def faithfulness_stats(deletion: Mapping[str, Any],
                       insertion: Mapping[str, Any]
                       ) -> Optional[Dict[str, Any]]:
    """Per sample ``insertion_i - deletion_i`` (the samples both curves
    scored) of one method's (or the random map's) stats, with its
    t-interval; None without per-sample values."""
    d, i = deletion.get('per_sample') or {}, insertion.get('per_sample') or {}
    both = {k: i[k] - d[k] for k in d
            if k in i and d[k] is not None and i[k] is not None}
    return _stats(both) if both else None


def timing_summary(seconds: Mapping[str, Mapping[Any, float]],
                   peaks: Optional[Mapping[str, Mapping[Any, Any]]] = None
                   ) -> Dict[str, Dict[str, Any]]:
    """Per method: ``seconds_per_sample`` (mean of the per-sample shares of
    the batch wall time), ``seconds_total`` (their sum), ``samples`` and
    ``peak_mib`` (largest peak over the batches; None where not
    measurable). No interval: the shares of one batch are equal by
    construction, not independent samples."""
    out: Dict[str, Dict[str, Any]] = {}
    for m, per in seconds.items():
        xs = [float(v) for v in per.values()]
        if not xs:
            continue
        pk = [float(v) for v in ((peaks or {}).get(m) or {}).values()
              if v is not None and math.isfinite(v)]
        out[m] = dict(seconds_per_sample=float(np.mean(xs)),
                      seconds_total=float(np.sum(xs)), samples=len(xs),
                      peak_mib=round(max(pk), 1) if pk else None,
                      per_sample={str(k): round(float(v), 6)
                                  for k, v in sorted(per.items())})
    return out


def hook_comparison(methods: Sequence[str],
                    metric_stats: Dict[str, Dict[str, Dict[str, Any]]],
                    not_applicable: Dict[str, str],
                    failures: List[dict], samples: int,
                    settings: Optional[Dict[str, Any]] = None,
                    random: Optional[Dict[str, Dict[str, Any]]] = None,
                    seconds: Optional[Dict[str, Dict[Any, float]]] = None,
                    peaks: Optional[Dict[str, Dict[Any, Any]]] = None,
                    agreement: Optional[Sequence[Mapping[str, Any]]] = None,
                    random_baseline: Optional[Dict[str, Any]] = None,
                    sanity: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, Any]:
    """The content of ``compare.json``.

    Args:
        metric_stats: ``{'<prefix>/<key>': {method: stats}}`` with the
            stats of :func:`~mmxai.evaluation.method_stats.
            method_metric_stats` (``value`` ranks the methods).
        random: ``{'<prefix>/<key>': stats}`` of the random map.
        seconds, peaks: ``{method: {index: value}}`` (see
            :func:`timing_summary`).
        agreement: per sample ``dict(methods, matrix)``
            (:func:`~mmxai.evaluation.agreement.agreement_matrix`).
    """
    random = dict(random or {})
    metric_stats = dict(metric_stats)
    for key in list(metric_stats):  # derived: insertion - deletion
        if not key.endswith('deletion_auc'):
            continue
        ins = key[:-len('deletion_auc')] + 'insertion_auc'
        faith = key[:-len('deletion_auc')] + 'faithfulness'
        if ins not in metric_stats or faith in metric_stats:
            continue
        per = {m: faithfulness_stats(st, metric_stats[ins][m])
               for m, st in metric_stats[key].items()
               if m in metric_stats[ins]}
        metric_stats[faith] = {m: st for m, st in per.items() if st}
        if key in random and ins in random:
            rf = faithfulness_stats(random[key], random[ins])
            if rf:
                random[faith] = rf
    metrics: Dict[str, Any] = {}
    for key, per in metric_stats.items():
        better = better_of(key)
        entry = dict(better=better, ranking=None, methods={},
                     random=random.get(key))
        if key.endswith('/faithfulness') or key == 'faithfulness':
            entry['derived'] = 'per sample insertion_auc - deletion_auc'
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
    timing = timing_summary({m: seconds[m] for m in methods
                             if m in (seconds or {})}, peaks)
    agree = mean_agreement(methods, agreement or [])
    summary = dict(methods=list(methods), samples=int(samples),
                   metrics=metrics, timing=timing, agreement=agree,
                   random_baseline=random_baseline, sanity=sanity,
                   not_applicable=dict(not_applicable),
                   failures=list(failures), interval=INTERVAL,
                   settings=settings or {})
    summary['recommendation'] = recommend_hook(summary)
    return summary


def _fmt(x: Any, d: int = 4) -> str:
    return '-' if not isinstance(x, (int, float)) or isinstance(x, bool) \
        else f'{x:.{d}g}'


def _ci_s(ci: Optional[Sequence[float]]) -> str:
    return '-' if not ci else f'[{_fmt(ci[0])}, {_fmt(ci[1])}]'


def hook_comparison_markdown(summary: Dict[str, Any]) -> str:
    """``compare.md``: the recommendation, a table per metric (rank, value,
    95 % interval, n; the random map below the methods), time and peak
    memory per method, the agreement matrix, the methods that did not
    apply or failed."""
    lines = ['# Method comparison over the test set', '',
             f"{summary['samples']} samples explained; methods: "
             f"{', '.join(summary['methods']) or 'none'}. Intervals: "
             f"{summary['interval']}.", '']
    if summary.get('recommendation'):
        lines += ['## Recommendation', '']
        lines += [f'- {x}' for x in summary['recommendation']]
        lines.append('')
    for key, entry in summary['metrics'].items():
        better = entry['better']
        lines += [f'## {key} ({better or "direction unknown"}'
                  f'{" is better" if better else ""})', '',
                  '| rank | method | value | mean | 95 % CI | n |',
                  '|---|---|---|---|---|---|']
        order = entry['ranking'] or list(entry['methods'])
        rows = [(entry['methods'][m].get('rank', '-'), m,
                 entry['methods'][m]) for m in order]
        if entry.get('random'):
            rows.append(('-', 'random (baseline)', entry['random']))
        for rank, m, st in rows:
            lines.append(f"| {rank} | {m} | {_fmt(st.get('value'))} | "
                         f"{_fmt(st.get('mean'))} | {_ci_s(st.get('ci95'))} "
                         f"| {st.get('n', '-')} |")
        lines.append('')
    timing = summary.get('timing') or {}
    if timing:
        lines += ['## Time and memory of the explanations', '',
                  'Wall time of each method on each batch (retries '
                  'included), shared equally among the samples it '
                  'explained; peak: the largest rise of the memory peak '
                  'over a batch (CUDA: allocator; CPU: resident set).', '',
                  '| method | s / sample | total s | samples | peak MiB |',
                  '|---|---|---|---|---|']
        for m, t in timing.items():
            lines.append(f"| {m} | {_fmt(t['seconds_per_sample'])} | "
                         f"{_fmt(t['seconds_total'])} | {t['samples']} | "
                         f"{_fmt(t.get('peak_mib'))} |")
        lines.append('')
    ag = summary.get('agreement') or {}
    if len(ag.get('methods') or []) > 1:
        names = ag['methods']
        lines += ['## Agreement', '',
                  'Spearman rank correlation between two methods\' maps of '
                  'the same sample, mean over the samples both explained.',
                  '', '| | ' + ' | '.join(names) + ' |',
                  '|---|' + '---|' * len(names)]
        for name, row in zip(names, ag['matrix']):
            lines.append(f'| {name} | ' + ' | '.join(
                '-' if x is None else f'{x:.3f}' for x in row) + ' |')
        lines += ['', f"![agreement]({HOOK_COMPARE_FILES['agreement']})", '']
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
    """Write ``compare.json``, ``compare.md`` and (two methods or more)
    ``agreement.png`` under ``root`` (each atomically); returns ``{kind:
    path}``."""
    paths = {k: osp.join(root, v) for k, v in HOOK_COMPARE_FILES.items()}
    ag = summary.get('agreement') or {}
    if len(ag.get('methods') or []) > 1:
        from ..visualization.compare import plot_agreement
        plot_agreement(paths['agreement'], matrix_of(ag), ag['methods'],
                       title='agreement: Spearman rank correlation of the '
                       f"maps (mean over {summary['samples']} samples)")
    else:
        paths.pop('agreement')
    write_json(paths['json'], summary)
    with atomic_path(paths['md']) as tmp:
        with open(tmp, 'w') as f:
            f.write(hook_comparison_markdown(summary))
    return paths
