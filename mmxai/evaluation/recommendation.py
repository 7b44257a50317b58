"""Which method to trust, in a few lines derived from the measured numbers.

One implementation for the clip-level comparison (``tools/compare.py``,
:func:`recommend` of its summary) and the dataset-scale one
(:class:`~mmxai.engine.ExplainHook` with several explainers,
:func:`recommend_hook` of ``compare.json``). Both summaries are first put
into one neutral form, the *evidence* (:func:`clip_evidence`,
:func:`hook_evidence`), and :func:`recommend_from` reads only that:

``criteria``
    metrics with a direction, in order of preference (the first with values
    is the *primary* one: insertion - deletion, else deletion AUC, else
    insertion AUC, else average drop, else the first measured): per
    method ``value`` and ``ci95`` (``[low, high]`` or None); ``random``
    (the value of a uniform random map scored the same way, or None).
``sanity``
    per method ``passed`` (True / False / None: not measured) and the
    correlation after randomisation; ``rule`` in words.
``seconds``, ``agreement``, ``n``, ``unit``, ``footer``.

Rules (nothing is written by hand): the best method on the primary
criterion among those that do not fail the sanity check; beside it the next
one, and "not separated at n samples" when their 95 % intervals overlap
("tied" when equal to 3 decimals); a method that scores higher but fails the
sanity check; the best on every other criterion (same interval rule); the
fastest method that beats the random map on the curves (deletion lower *and*
insertion higher than random's mean) and passes the sanity check; those that
do not beat it; those whose interval overlaps the random map's on a curve;
the criteria on which the random map scores better than a method; those
that fail the sanity check; how much the two best
agree (Spearman between their maps: >= 0.5 agree, >= 0.2 partly, else
disagree); how many samples it rests on.
"""
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .agreement import pair

__all__ = ['recommend', 'recommend_hook', 'recommend_from', 'clip_evidence',
           'hook_evidence', 'separated', 'METRIC_LABELS']

#: short names of the registered metrics' keys (unknown keys: the key)
METRIC_LABELS = dict(
    faithfulness='insertion - deletion', deletion_auc='deletion AUC',
    insertion_auc='insertion AUC', average_drop='average drop %',
    increase_rate='increase rate', pointing_game='pointing game',
    temporal_grounding='temporal grounding', mask_iou='mask IoU',
    minimal_mask_class='minimal mask (class)')
#: the primary criterion, in order of preference
PRIMARY = ('faithfulness', 'deletion_auc', 'insertion_auc', 'average_drop')
#: faithfulness criteria ("most faithful here")
FAITHFUL = ('faithfulness', 'deletion_auc', 'insertion_auc',
            'average_drop', 'increase_rate')
#: the curves a method must beat the random map on
CURVES = ('deletion_auc', 'insertion_auc')
SANITY_KEYS = ('randomization_spearman', 'randomization_spearman_head',
               'randomization_passed', 'randomization_curve')


def _num(x: Any) -> Optional[float]:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _fmt(x: Optional[float], d: int = 3) -> str:
    return '-' if x is None else f'{x:.{d}f}'


def _ci(ci: Optional[Sequence[float]], d: int = 3) -> str:
    return '' if not ci else f' [{_fmt(ci[0], d)}, {_fmt(ci[1], d)}]'


def separated(a: Optional[Sequence[float]], b: Optional[Sequence[float]]
              ) -> Optional[bool]:
    """Whether two 95 % intervals ``[low, high]`` do not overlap (None:
    an interval is missing)."""
    if not a or not b:
        return None
    return a[1] < b[0] or b[1] < a[0]


# ----------------------------------------------------------- the core
def _criterion(key: str, better: str, values: Mapping[str, Any],
               label: Optional[str] = None, random: Optional[float] = None,
               random_ci95: Optional[Sequence[float]] = None
               ) -> Dict[str, Any]:
    return dict(key=key, label=label or METRIC_LABELS.get(key, key),
                better=better, random=_num(random), random_ci95=random_ci95,
                methods={m: dict(value=_num(v.get('value')),
                                 ci95=v.get('ci95'))
                         for m, v in values.items()
                         if _num(v.get('value')) is not None})


def _ranked(crit: Dict[str, Any], among: Sequence[str]) -> List[str]:
    sign = 1 if crit['better'] == 'lower' else -1
    have = [m for m in among if m in crit['methods']]
    return sorted(have, key=lambda m: sign * crit['methods'][m]['value'])


def _gap(crit: Dict[str, Any], best: str, second: Optional[str], n: int,
         unit: str) -> str:
    if second is None:
        return ''
    a, b = crit['methods'][best], crit['methods'][second]
    if round(abs(a['value'] - b['value']), 3) == 0:
        return f'; tied with {second} (the same to 3 decimals)'
    if separated(a['ci95'], b['ci95']) is False:
        return (f'; not separated from {second} at {n} {unit}s (95 % '
                'intervals overlap)')
    return f'; next: {second} ({_fmt(b["value"])}{_ci(b["ci95"])})'


def _beats(crit: Dict[str, Any], m: str) -> Optional[bool]:
    v, r = crit['methods'].get(m, {}).get('value'), crit['random']
    if v is None or r is None:
        return None
    return v < r if crit['better'] == 'lower' else v > r


def recommend_from(ev: Mapping[str, Any]) -> List[str]:
    """Recommendation lines from the evidence (module docstring)."""
    unit, n = ev.get('unit', 'sample'), int(ev.get('n', 0))
    criteria = [c for c in ev.get('criteria', []) if c['methods']]
    names = [m for m in ev.get('methods', [])
             if any(m in c['methods'] for c in criteria)
             or m in (ev.get('seconds') or {})]
    if not names:
        return [f'no method produced a map on these {unit}s: nothing to '
                'recommend (see not_applicable and failures)']
    sanity = ev.get('sanity') or {}
    passed = sanity.get('passed') or {}

    def ok(m):
        return passed.get(m) is not False
    lines: List[str] = []
    primary = next((c for k in PRIMARY for c in criteria if c['key'] == k),
                   criteria[0] if criteria else None)
    best, sane, order = None, [], list(names)
    if primary is None:
        lines.append('no metric with a direction was measured: nothing to '
                     'rank (add e.g. mmxai.DeletionInsertionAUC)')
    else:
        order = _ranked(primary, names)
        order += [m for m in names if m not in order]
        ranked = [m for m in order if m in primary['methods']]
        sane = [m for m in ranked if ok(m)]
        best = sane[0] if sane else ranked[0]
        st = primary['methods'][best]
        parts = ''
        if primary['key'] == 'faithfulness':
            comp = [c for c in criteria if c['key'] in CURVES
                    and best in c['methods']]
            parts = ': ' + ', '.join(
                f"{c['label'].split()[0]} {_fmt(c['methods'][best]['value'])}"
                for c in comp) if comp else ''
        head = 'most faithful here' if primary['key'] in FAITHFUL else \
            f"best here by {primary['label']}"
        gap = _gap(primary, best, sane[1] if len(sane) > 1 else None, n,
                   unit)
        lines.append(
            f"{head}: {best} ({primary['label']} {_fmt(st['value'])}"
            f"{_ci(st['ci95'])}{parts}{gap})")
        if ranked[0] != best:
            what = 'the curves' if primary['key'] == 'faithfulness' else \
                primary['label']
            lines.append(f'{ranked[0]} scores higher on {what} '
                         f"({_fmt(primary['methods'][ranked[0]]['value'])}) "
                         'but fails the sanity check')
        skip = {primary['key']}
        if primary['key'] == 'faithfulness':
            skip.update(CURVES)
        for c in criteria:
            if c['key'] in skip or c is primary:
                continue
            r = _ranked(c, names)
            if len(r) < 2:
                continue
            top = c['methods'][r[0]]
            lines.append(f"by {c['label']}: {r[0]} ({_fmt(top['value'])}"
                         f"{_ci(top['ci95'])}{_gap(c, r[0], r[1], n, unit)})")
    curves = [c for c in criteria if c['key'] in CURVES
              and c['random'] is not None]
    if curves:
        both = 'on both curves' if len(curves) > 1 else \
            f"on {curves[0]['label']}"

        def beats(m):
            got = [_beats(c, m) for c in curves]
            return bool(got) and all(g is True for g in got)
        rnd = ', '.join(f"{c['label'].split()[0]} {_fmt(c['random'])}"
                        for c in curves)
        beat = [m for m in order if beats(m) and ok(m)]
        secs = ev.get('seconds') or {}
        timed = [m for m in beat if _num(secs.get(m)) is not None]
        if timed:
            fast = min(timed, key=lambda m: secs[m])
            lines.append(f'fastest that beats a random map {both} and '
                         f'passes the sanity check: {fast} '
                         f'({secs[fast]:.2f} s per {unit}; random: {rnd})')
        elif beat:
            lines.append(f'beat a random map {both} and pass the sanity '
                         f"check: {', '.join(beat)} (random: {rnd})")
        lose = [m for m in order if not beats(m)]
        if lose:
            lines.append(f'do not beat a random map {both} here: '
                         + ', '.join(lose))
        close = []
        for m in order:
            on = [c['label'] for c in curves if m in c['methods'] and
                  separated(c['methods'][m]['ci95'], c['random_ci95'])
                  is False]
            if on:
                close.append(f"{m} ({', '.join(on)})")
        if close:
            lines.append(f'not separated from the random map at {n} '
                         f'{unit}s (95 % intervals overlap): '
                         + ', '.join(close))
    for c in criteria:
        if c['key'] in CURVES or c['key'] == 'faithfulness' or \
                c['random'] is None:
            continue
        sign = 1 if c['better'] == 'lower' else -1
        worse = [m for m in order if m in c['methods'] and
                 sign * (c['random'] - c['methods'][m]['value']) < 0]
        if worse:
            lines.append(f"a random map scores better on {c['label']} "
                         f"({_fmt(c['random'])}) than: " + ', '.join(worse))
    fails = [m for m in order if passed.get(m) is False]
    if fails:
        value = sanity.get('value') or {}
        lines.append(
            f"fail the sanity check on this model ({sanity.get('rule', '')}"
            '): ' + ', '.join(f'{m} ({_fmt(_num(value.get(m)), 2)})'
                              for m in fails))
    if best is not None and len(sane) > 1:
        rho = pair(ev.get('agreement'), best, sane[1])
        if rho is not None:
            word = 'agree' if rho >= 0.5 else (
                'partly agree' if rho >= 0.2 else 'disagree')
            lines.append(f'{best} and {sane[1]} {word} (Spearman '
                         f'{rho:.2f} between their maps)')
    if ev.get('footer'):
        lines.append(ev['footer'])
    return lines


# ------------------------------------------------- the two summaries
def clip_evidence(summary: Mapping[str, Any]) -> Dict[str, Any]:
    """The evidence of ``tools/compare.py``'s summary (``methods``: per
    method the means ``deletion``, ``insertion``, ``faithfulness``,
    ``average_drop``, ``seconds``, ``sanity_last``, ``sanity_passed`` and
    ``<key>_ci95`` half-widths; ``random``; ``agreement``; ``videos``)."""
    m = summary.get('methods') or {}
    rnd = summary.get('random') or {}

    def values(k):
        out = {}
        for name, row in m.items():
            v, h = _num(row.get(k)), _num(row.get(k + '_ci95'))
            if v is not None:
                out[name] = dict(value=v, ci95=None if h is None
                                 else [v - h, v + h])
        return out
    criteria = [
        _criterion('faithfulness', 'higher', values('faithfulness'),
                   random=rnd.get('faithfulness')),
        _criterion('deletion_auc', 'lower', values('deletion'),
                   label='deletion', random=rnd.get('deletion')),
        _criterion('insertion_auc', 'higher', values('insertion'),
                   label='insertion', random=rnd.get('insertion')),
        _criterion('average_drop', 'lower', values('average_drop'),
                   random=rnd.get('average_drop'))]
    n = len(summary.get('videos') or [])
    cascade = summary.get('sanity_cascade') or []
    return dict(
        methods=list(m), criteria=criteria, unit='clip', n=n,
        seconds={k: row.get('seconds') for k, row in m.items()},
        sanity=dict(
            passed={k: row.get('sanity_passed') for k, row in m.items()},
            value={k: row.get('sanity_last') for k, row in m.items()},
            rule='rank correlation after randomising '
            f'{" + ".join(cascade)} >= {summary.get("sanity_threshold")}'),
        agreement=summary.get('agreement'),
        footer=f'from {n} clip(s), budget {summary.get("budget")}: '
        + ('with one clip differences are not tested; give more clips for '
           'intervals' if n == 1 else '95 % intervals in compare.json'))


def recommend(summary: Mapping[str, Any]) -> List[str]:
    """The recommendation of ``tools/compare.py``'s summary
    (:func:`clip_evidence`, :func:`recommend_from`)."""
    return recommend_from(clip_evidence(summary))


def hook_evidence(summary: Mapping[str, Any]) -> Dict[str, Any]:
    """The evidence of the hook's ``compare.json`` content
    (:func:`mmxai.outputs.hook_comparison.hook_comparison`): every metric
    key with a direction is a criterion (``value``, ``ci95`` per method,
    ``random['value']`` where the random map was scored), the
    ``randomization_*`` keys of ``ModelRandomization`` make the sanity
    check, ``timing`` the seconds per sample."""
    criteria, seen = [], set()
    sanity: Dict[str, Any] = dict(passed={}, value={})
    for key, entry in (summary.get('metrics') or {}).items():
        name = key.rsplit('/', 1)[-1]
        if name == 'randomization_passed':
            for m, st in entry['methods'].items():
                v = _num(st.get('value'))
                sanity['passed'][m] = None if v is None else v >= 1.0
            continue
        if name == 'randomization_spearman':
            sanity['value'] = {m: st.get('value')
                               for m, st in entry['methods'].items()}
            continue
        if name in SANITY_KEYS or entry.get('better') is None or \
                name in seen:
            continue
        seen.add(name)
        rnd = entry.get('random') or {}
        criteria.append(_criterion(name, entry['better'], entry['methods'],
                                   random=rnd.get('value'),
                                   random_ci95=rnd.get('ci95')))
    info = summary.get('sanity') or {}
    sanity['rule'] = ('ModelRandomization: mean rank correlation after '
                      're-initialising '
                      f"{' + '.join(info.get('cascade') or ['the cascade'])}"
                      f" >= {info.get('threshold', 'its threshold')}")
    n = int(summary.get('samples', 0))
    timing = summary.get('timing') or {}
    return dict(
        methods=list(summary.get('methods') or []), criteria=criteria,
        unit='sample', n=n, sanity=sanity,
        seconds={m: t.get('seconds_per_sample') for m, t in timing.items()},
        agreement=summary.get('agreement'),
        footer=f'from {n} sample(s): ' + (
            'with one sample differences are not tested' if n < 2 else
            "95 % Student's t intervals over the samples in compare.json"))


def recommend_hook(summary: Mapping[str, Any]) -> List[str]:
    """The recommendation of the hook's comparison (:func:`hook_evidence`,
    :func:`recommend_from`)."""
    return recommend_from(hook_evidence(summary))
