"""The Markdown report: prose from ``templates/benchmarks.md.tmpl``, tables
and derived sentences from the results."""
import json
import os
import os.path as osp
import platform
import re
from string import Template
from typing import Dict, List, Mapping

from .settings import (BASELINES, CAM_TYPE, CASCADES, GRADIENT,
                       METHOD_SETTINGS, SANITY_PASS, VARIANTS, model_title)

TEMPLATE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'templates', 'benchmarks.md.tmpl')


def summarise(res: dict) -> Dict[str, dict]:
    """Per method: means of every score and of the seconds per clip."""
    import numpy as np
    out: Dict[str, dict] = {}
    for r in res['rows']:
        out.setdefault(r['method'], {k: [] for k in (
            'pointing', 'pointing_cell', 'energy', 'temporal_grounding',
            'temporal_energy',
            'deletion', 'insertion', 'seconds')})
        for k, v in out[r['method']].items():
            v.append(r[k])
    return {m: {k: float(np.mean(v)) for k, v in d.items()}
            for m, d in out.items()}


def sanity_table(res: dict) -> Dict[str, dict]:
    """Per method: the Spearman correlation after the head, after the whole
    cascade and per step (or the error)."""
    out = {}
    for m, s in res['sanity'].items():
        if 'error' in s:
            out[m] = dict(error=s['error'])
            continue
        out[m] = dict(head=s['steps'][0]['spearman'],
                      top=s['steps'][-1]['spearman'],
                      per_step=[st['spearman'] for st in s['steps']],
                      layers=s['steps'][-1]['layers'])
    return out


def machine_line() -> str:
    """CPU, cores, torch and Python versions."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, '
            f'Python {platform.python_version()}')


def fmt(v, nd=2) -> str:
    return '-' if v is None else f'{v:.{nd}f}'


def render_template(text: str, values: Mapping[str, str]) -> str:
    """``string.Template`` substitution of ``values`` into ``text``; a line
    that is only a placeholder with an empty value is dropped, and with it
    the blank line after it when it is a paragraph of its own."""
    lines, out, drop_blank = text.split('\n'), [], False
    for line in lines:
        m = re.fullmatch(r'\$\{?(\w+)\}?', line)
        if m and values[m.group(1)] == '':
            drop_blank = not out or out[-1] == ''
            continue
        if drop_blank and line == '':
            drop_blank = False
            continue
        drop_blank = False
        out.append(line)
    return Template('\n'.join(out)).substitute(values)


def _model_rows(args, accuracy) -> List[str]:
    lines = []
    for name in args.models:
        a = accuracy.get(name, {})
        lines.append(
            f'| {model_title(name)} | `configs/benchmark/{name}_'
            f'synthetic.py` | {a.get("params", 0):,} | '
            f'{a.get("size_kb", 0)} KB | {a.get("epochs", "?")} epochs'
            + (f' on {a["train_clips"]} clips' if a.get('train_clips') else '')
            + f', {a.get("train_seconds", 0) / 60:.0f} min'
            + (f' (continued from {a["load_from"]}, lr {a.get("lr")})'
               if a.get('load_from') else '') + ' | '
            f'**{100 * a.get("test_top1", float("nan")):.1f} %** |')
    return lines


def model_table(name: str, res: dict, accuracy) -> List[str]:
    """The localisation and faithfulness table of one model."""
    summ = summarise(res)
    acc = accuracy.get(name, {}).get('test_top1', float('nan'))
    warn = [] if acc > 0.95 else [
        f'**Test accuracy {100 * acc:.1f} % (below the 95 % goal): '
        'these maps explain a model that has not learnt the task well, '
        'so its rows measure little.**', '']
    lines = [f'### {model_title(name)}', ''] + warn + [
        '| method | pointing | pointing (cell) | energy | TG | '
        't-energy | deletion | insertion | s/clip |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    order = sorted((m for m in summ if m not in BASELINES),
                   key=lambda m: -summ[m]['pointing'] - summ[m]['energy'])
    for m in order + list(BASELINES):
        s = summ[m]
        lines.append(
            f'| {m} | {s["pointing"]:.2f} | {s["pointing_cell"]:.2f} | '
            f'{s["energy"]:.3f} | '
            f'{s["temporal_grounding"]:.2f} | {s["temporal_energy"]:.2f} '
            f'| {s["deletion"]:.3f} | {s["insertion"]:.3f} | '
            + ('-' if m in BASELINES else f'{s["seconds"]:.2f}') + ' |')
    for m, why in sorted(res['na'].items()):
        lines.append(f'| {m} | n/a ({why}) | | | | | | | |')
    for m, err in sorted(res.get('failed', {}).items()):
        lines.append(f'| {m} | failed ({err}) | | | | | | | |')
    return lines


def _sanity_rows(args, results) -> List[str]:
    lines = []
    for name in args.models:
        for m, s in sanity_table(results[name]).items():
            if 'error' in s:
                lines.append(f'| {name} | {m} | '
                             f'{"yes" if m in GRADIENT else "no"} | n/a '
                             f'({s["error"]}) | | | |')
                continue
            ok = s['top'] < SANITY_PASS
            lines.append(
                f'| {name} | {m} | {"yes" if m in GRADIENT else "no"} | '
                f'{s["head"]:.2f} | {s["top"]:.2f} | '
                f'{" ".join(f"{v:.2f}" for v in s.get("per_step", []))} | '
                f'{"yes" if ok else "**no**"} |')
    return lines


def _block(lines: List[str]) -> str:
    """Lines of a section as one template value (no trailing blank)."""
    return '\n'.join(lines).rstrip('\n')


def render_report(args, results, accuracy, speed_md, elapsed, machine,
                  load_start, load_end, cpu_s=float('nan'),
                  reused=()) -> str:
    """The whole ``docs/benchmarks.md``: ``speed_md`` is
    ``bench_speed.py``'s table ('' leaves the section out), ``elapsed`` and
    ``cpu_s`` in seconds, ``reused`` the models taken from ``--reuse``."""
    reused_note = (
        f' Results of {", ".join(reused)} were computed by an earlier '
        'invocation of the same command (`--reuse`); their time is '
        'included.' if reused else '')
    values = dict(
        clips=args.clips, jobs=args.jobs, machine=machine,
        wall_min=f'{elapsed / 60:.1f}', load_start=f'{load_start:.1f}',
        load_end=f'{load_end:.1f}', cpu_min=f'{cpu_s / 60:.1f}',
        idle_min=f'{cpu_s / 120:.1f}', reused_note=reused_note,
        model_rows=_block(_model_rows(args, accuracy)),
        method_settings='; '.join(
            f'`{m}` {json.dumps(s)}' for m, s in METHOD_SETTINGS.items() if s),
        variants='; '.join(
            f'`{v}` = `{m}` with {json.dumps(extra)}'
            for v, (m, extra) in VARIANTS.items()),
        tolerance=fmt(next(iter(results.values()))['tolerance'], 1),
        cell=args.cell, steps=args.steps,
        model_tables='\n\n'.join(_block(model_table(n, results[n], accuracy))
                                 for n in args.models),
        sanity_clips=args.sanity_clips, sanity_pass=SANITY_PASS,
        cascades='; '.join(f'{n}: ' + ' > '.join(
            f'`{c}`' for c in results[n].get('cascade') or CASCADES[n])
            for n in args.models),
        sanity_rows=_block(_sanity_rows(args, results)),
        goals=_block(goals_section(args, results, accuracy)),
        speed=f'## Speed against the anchors\n\n{speed_md}' if speed_md
        else '',
        reading=_block(reading_section(results, accuracy)))
    with open(TEMPLATE) as f:
        return render_template(f.read(), {k: str(v)
                                          for k, v in values.items()})


def goals_section(args, results, accuracy) -> List[str]:
    """The goals table (accuracy, best pointing, baselines, sanity)."""
    lines = ['## Goals', '', '| goal | result | met |', '|---|---|---|']
    for name in args.models:
        acc = accuracy.get(name, {}).get('test_top1', float('nan'))
        lines.append(f'| {name}: test accuracy > 95 % | {100 * acc:.1f} % | '
                     f'{"yes" if acc > 0.95 else "**no**"} |')
    for name in args.models:
        summ = summarise(results[name])
        methods = [m for m in summ if m not in BASELINES]
        if not methods:
            continue
        best = max(methods, key=lambda m: summ[m]['pointing'])
        bp = summ[best]['pointing']
        lines.append(f'| {name}: best pointing game >= 0.9 | {best} '
                     f'{bp:.2f} | {"yes" if bp >= 0.9 else "**no**"} |')
        worse = [m for m in methods if not beats_random(summ, m)]
        lines.append(
            f'| {name}: every method beats the random map on pointing, '
            f'deletion and insertion | ' + (
                'all do' if not worse else 'not: ' + ', '.join(worse))
            + f' | {"yes" if not worse else "**no**"} |')
    fails = []
    for name in args.models:
        for m, s in sanity_table(results[name]).items():
            if m in GRADIENT and ('error' in s or s['top'] >= SANITY_PASS):
                fails.append(f'{name}/{m}')
    if not any(results[n].get('sanity') for n in args.models):
        lines.append('| every gradient-based method passes the randomisation '
                     'test | not run (`--skip-sanity` or no gradient method)'
                     ' | - |')
        return lines + ['']
    lines.append('| every gradient-based method passes the randomisation '
                 'test | ' + ('all pass' if not fails else 'fail: ' +
                              ', '.join(fails)) +
                 f' | {"yes" if not fails else "**no**"} |')
    return lines + ['']


def beats_random(summ: Dict[str, dict], m: str) -> bool:
    """Whether method ``m`` beats the i.i.d. random map on pointing,
    deletion and insertion."""
    rnd = summ['random map']
    return (summ[m]['pointing'] > rnd['pointing'] and
            summ[m]['deletion'] < rnd['deletion'] and
            summ[m]['insertion'] > rnd['insertion'])


def reading_section(results, accuracy=None) -> List[str]:
    """Which method when, derived from this run's numbers (models above
    95 % test accuracy only, when there are any)."""
    import numpy as np
    accuracy = accuracy or {}
    learnt = [n for n in results
              if accuracy.get(n, {}).get('test_top1', 0) > 0.95]
    summs = {n: summarise(r) for n, r in results.items()
             if n in learnt or not learnt}
    names = sorted({m for s in summs.values() for m in s} - set(BASELINES))
    mean = {}
    for m in names:
        vals = [s[m] for s in summs.values() if m in s]
        mean[m] = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        mean[m]['models'] = len(vals)
        mean[m]['beats'] = all(beats_random(s, m) for s in summs.values()
                               if m in s)
        mean[m]['faith'] = mean[m]['insertion'] - mean[m]['deletion']

    def top(key, n=3, rev=True, pool=None):
        pool = list(pool if pool is not None else mean)
        return sorted(pool, key=lambda m: mean[m][key], reverse=rev)[:n]

    def lst(ms, key, nd=2):
        return ', '.join(f'`{m}` {mean[m][key]:.{nd}f}' for m in ms)

    good = [m for m in mean if mean[m]['beats']]
    fast = top('seconds', 1, rev=False, pool=good)
    lines = ['## Reading the results', '',
             'Averaged over the models each method applies to (' +
             ', '.join(summs) + ('; models below 95 % test accuracy are left '
                                 'out' if len(summs) < len(results) else '')
             + '):', '',
             '- Pointing (strict, 15 px at 224): ' + lst(top('pointing'),
                                                        'pointing') + '.',
             '- Pointing at the 4x4 grid\'s resolution: '
             + lst(top('pointing_cell'), 'pointing_cell') + '.',
             '- Temporal grounding (when): ' + lst(
                 top('temporal_grounding'), 'temporal_grounding') + '.',
             '- Faithfulness (insertion - deletion AUC): ' + lst(
                 top('faith'), 'faith', 3) + '.',
             '- Cost (seconds per clip): ' + lst(top('seconds', 3, False),
                                                'seconds') + '; most '
             'expensive ' + lst(top('seconds', 2), 'seconds', 1) + '.', '']
    lines += ['Which method when (from these numbers):', '']
    if fast:
        lines.append(f'- A first look: `{fast[0]}`, the cheapest method '
                     'that beats the random map on pointing, deletion and '
                     'insertion for every model ('
                     f'{mean[fast[0]]["seconds"]:.2f} s per clip).')
    when = top('temporal_grounding', 1)[0]
    cams = [m for m in ('gradcam', 'saliency_tubes', 'cfp') if m in mean]
    lines.append(f'- When the action happens: `{when}`' + (
        f' (CAM-type maps: {lst(cams, "temporal_grounding")}; they find the '
        'right frames even where their coarse grid misses the pixels).'
        if cams else '.'))
    lines.append(f'- Where, pixel-precisely: `{top("pointing", 1)[0]}`; '
                 'coarse-grid methods (CAMs, occlusion, RISE) localise only '
                 'to their cell size, which the strict pointing game on 64 px '
                 'clips punishes.')
    lines.append(f'- The most faithful ranking of evidence (deletion/insertion'
                 f'): `{top("faith", 1)[0]}`.')
    bad = sorted(m for m in mean if not mean[m]['beats'])
    tf = summs.get('transformer', {})
    cam_fail = any(m in tf and not beats_random(tf, m) for m in CAM_TYPE)
    if bad:
        lines.append('- Not better than the random map on all of pointing, '
                     'deletion and insertion for at least one model: '
                     + ', '.join(f'`{m}`' for m in bad) + ' (see the tables '
                     'for which criterion; the perturbation methods run with '
                     'small budgets here).' + (
                         ' On the transformer the CAM-type maps fall short at '
                         'every layer tried and at a finer head grid '
                         '(`docs/transformer_cams.md`, regenerated by '
                         '`tools/benchmarks/bench_transformer_cams.py`).'
                         if cam_fail else '') + ' Check a method with '
                     'deletion/insertion on your own model before trusting '
                     'it.')
    return lines + ['']


def partial_report(args, results, accuracy, elapsed, machine, load_start,
                   load_end, cpu_s=float('nan')) -> str:
    """``--partial``: the model tables, sanity rows and goals of the
    ``--methods`` rows only (with the baselines), to be merged into
    ``docs/benchmarks.md`` by hand; the run's command, seed and times."""
    import sys
    seed = args.data_seed
    methods = args.methods or sorted(
        {r['method'] for n in args.models for r in results[n]['rows']}
        - set(BASELINES))
    lines = [
        '# Benchmark rows of ' + (', '.join(f'`{m}`' for m in args.methods)
                                  if args.methods else 'every method'),
        '', '```', 'python ' + ' '.join(sys.argv), '```', '',
        f'Machine: {machine}. Held-out clips: `{args.data_root}` (generator '
        f'seed {seed if seed is not None else "102, shipped"}), '
        f'{args.clips} per model. Wall time {elapsed / 60:.1f} min (load '
        f'average {load_start:.1f} at the start, {load_end:.1f} at the end), '
        f'CPU time {cpu_s / 60:.1f} min.', '',
        'Method settings: ' + '; '.join(
            f'`{m}` {json.dumps(METHOD_SETTINGS.get(m, {}))}'
            for m in methods) + '.', '']
    for n in args.models:
        lines += model_table(n, results[n], accuracy) + ['']
    sanity = _sanity_rows(args, results)
    if sanity:
        lines += ['| model | method | gradient-based | after head | after '
                  'cascade | per step | passes |',
                  '|---|---|---|---:|---:|---|---|'] + sanity + ['']
    lines += goals_section(args, results, accuracy)
    return '\n'.join(lines)
