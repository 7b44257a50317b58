#!/usr/bin/env python
"""Does ``compare_methods``' recommendation agree with the synthetic
benchmark's ranking? (issue 19; results in ``docs/compare.md``.)

    .venv/bin/python tools/benchmarks/bench_compare_agreement.py \
        [--models demo i3d tsm transformer] [--clips 8] [--seed 2026] \
        [--budget fast] [--methods ...] [--reuse] \
        [--work-dir work_dirs/bench_compare_agreement]
    .venv/bin/python tools/benchmarks/bench_compare_agreement.py \
        --rise-probe [--models demo i3d]   # rise_probe() only

Per model (the bundled demo I3D and the benchmark's I3D, TSM, UniFormer):

1. ``--clips`` synthetic clips from the fresh seed ``--seed`` (not the
   benchmark's shipped 102 nor its fresh-seed check 1717; not the demo's
   0-2), balanced over the 4 classes: the benchmark generator (medium, 16x64
   px) for the benchmark models, :func:`mmxai.datasets.synthetic.
   generate_dataset` (the demo's clip settings) for the demo model;
2. ``compare_methods`` on them (``--budget``, its own target: the
   prediction; its own curves, random map and cheap sanity check);
3. the benchmark's own evaluation (``suite.evaluation.evaluate_model``:
   the benchmark budgets, the ground-truth class, 16-step curves, pointing
   against the planted disc) on the same clips, sanity check off;
4. the agreement (:func:`agreement`) of compare's ranking with (a) that
   re-run and (b) the shipped benchmark tables (``docs/benchmarks.md``,
   seed 102, 12 clips; the shipped run's per-method JSON is not kept, only
   the issue 17/18 partial runs, so the tables are parsed).

Agreement, per model, over the methods both rank (``M``):

* Kendall tau-b (ties counted as in :func:`kendall_tau_b`) and Spearman rho
  (average ranks) between compare's ``insertion - deletion`` and each
  benchmark column: ``insertion - deletion``, ``-deletion``,
  ``insertion``, ``pointing``, ``pointing (cell)``; p-values from
  ``scipy.stats`` (two-sided) when it is installed;
* whether compare's "most faithful" method (the first line of the
  recommendation) is in the benchmark's top 3 of ``M`` (every method tied
  with the third counts) by ``insertion - deletion`` and by pointing;
* the flags: compare's "do not beat a random map" set against the
  benchmark's (deletion and insertion both better than its i.i.d. random
  map; and its own criterion, pointing too), and compare's "fail the
  sanity check" set against the benchmark's shipped sanity table;
* diagnostics: per discordant pair, whether either side separates the two
  methods (paired 95 % interval over the clips excluding 0).

Serial, one torch thread; results per model in ``--work-dir`` (``--reuse``
takes them from there), the report in ``<work-dir>/agreement.md``.
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import sys
import time
from itertools import combinations
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

#: model -> (config, checkpoint, clip kind)
MODELS = {
    'demo': ('configs/demo/i3d_tiny_synthetic.py',
             'demo/i3d_tiny_synthetic.pth', 'demo'),
    'i3d': ('configs/benchmark/i3d_synthetic.py',
            'checkpoints/benchmark/i3d_synthetic.pth', 'benchmark'),
    'tsm': ('configs/benchmark/tsm_synthetic.py',
            'checkpoints/benchmark/tsm_synthetic.pth', 'benchmark'),
    'transformer': ('configs/benchmark/transformer_synthetic.py',
                    'checkpoints/benchmark/transformer_synthetic.pth',
                    'benchmark'),
}
SANITY_PASS = 0.5  # compare's and the benchmark's threshold
TITLES = {'i3d': 'I3D (tiny ResNet3d-18)', 'tsm': 'TSM (MobileNetV2-0.5)',
          'transformer': 'UniFormer (tiny video transformer)'}
#: Benchmark columns compared with compare's score: name -> (key, sign);
#: the score is ``sign * value`` (higher is better).
COLUMNS = {'ins-del': ('faith', 1), '-deletion': ('deletion', -1),
           'insertion': ('insertion', 1), 'pointing': ('pointing', 1),
           'pointing (cell)': ('pointing_cell', 1)}


# ---------------------------------------------------------------- pure part
def average_ranks(x: Sequence[float]) -> List[float]:
    """Ranks 1..n of ``x`` (ascending), ties given their average rank."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two score lists (same items, same order):
    ``(C - D) / sqrt((n0 - n1) (n0 - n2))`` with ``C`` / ``D`` the
    concordant / discordant pairs, ``n0 = n(n-1)/2`` and ``n1``, ``n2`` the
    pairs tied in ``x``, in ``y``. NaN when either side is constant."""
    if len(x) != len(y):
        raise ValueError(f'lengths differ: {len(x)} and {len(y)}')
    c = d = tx = ty = 0
    for i, j in combinations(range(len(x)), 2):
        a, b = x[i] - x[j], y[i] - y[j]
        if a == 0 and b == 0:
            tx += 1
            ty += 1
        elif a == 0:
            tx += 1
        elif b == 0:
            ty += 1
        elif (a > 0) == (b > 0):
            c += 1
        else:
            d += 1
    n0 = len(x) * (len(x) - 1) // 2
    den = math.sqrt((n0 - tx) * (n0 - ty))
    return (c - d) / den if den else float('nan')


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the average ranks."""
    rx, ry = average_ranks(x), average_ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx)**2 for a in rx)
    syy = sum((b - my)**2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float('nan')


def top_k(scores: Mapping[str, float], k: int = 3) -> List[str]:
    """The ``k`` highest-scoring keys and every key tied with the k-th."""
    order = sorted(scores, key=lambda m: -scores[m])
    if len(order) <= k:
        return order
    cut = scores[order[k - 1]]
    return [m for m in order if scores[m] >= cut]


def set_agreement(a: Sequence[str], b: Sequence[str],
                  universe: Sequence[str]) -> dict:
    """Two flag sets over ``universe``: both, only a, only b, neither,
    and whether they are equal."""
    a, b = set(a) & set(universe), set(b) & set(universe)
    return dict(both=sorted(a & b), only_a=sorted(a - b),
                only_b=sorted(b - a),
                neither=sorted(set(universe) - a - b), equal=a == b,
                agree=len(universe) - len(a ^ b), of=len(universe))


def paired_separates(xs: Sequence[float], ys: Sequence[float]) -> bool:
    """Whether the paired 95 % normal interval of ``x - y`` over clips
    excludes 0 (fewer than two clips: False)."""
    d = [a - b for a, b in zip(xs, ys)]
    n = len(d)
    if n < 2:
        return False
    m = sum(d) / n
    sd = math.sqrt(sum((v - m)**2 for v in d) / (n - 1))
    return abs(m) > 1.96 * sd / math.sqrt(n)


def correlations(a: Mapping[str, float], b: Mapping[str, float]) -> dict:
    """Kendall tau-b and Spearman rho over the keys of both (with scipy's
    two-sided p-values when it is installed)."""
    keys = sorted(set(a) & set(b))
    x, y = [a[k] for k in keys], [b[k] for k in keys]
    out = dict(n=len(keys), tau=kendall_tau_b(x, y), rho=spearman(x, y))
    try:
        from scipy import stats
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            out['tau_p'] = float(stats.kendalltau(x, y).pvalue)
            out['rho_p'] = float(stats.spearmanr(x, y).pvalue)
    except ImportError:
        pass
    return out


def agreement(compare: dict, bench: dict,
              sanity_fails: Optional[Dict[str, Sequence[str]]] = None,
              compare_clips: Optional[Dict[str, List[float]]] = None,
              bench_clips: Optional[Dict[str, List[float]]] = None) -> dict:
    """Agreement of compare's ranking with one benchmark ranking.

    Args:
        compare: per method ``faithfulness``, ``beats_random``,
            ``sanity_passed``; key ``'_best'``: compare's most faithful.
        bench: per method (and ``'random map'``) ``deletion``,
            ``insertion``, ``pointing``, ``pointing_cell``.
        sanity_fails: ``{label: methods the benchmark's sanity table
            fails}`` (``None``: not compared); its tested methods under
            ``'_sanity_tested'`` of ``bench`` if given.
        compare_clips / bench_clips: per method the per-clip
            ``insertion - deletion`` (same clips), for the diagnostics.
    """
    best = compare.get('_best')
    rnd = bench.get('random map')
    methods = sorted(k for k in compare if not k.startswith('_')
                     and k in bench and k != 'random map')
    c_score = {m: compare[m]['faithfulness'] for m in methods}
    out: Dict[str, object] = dict(methods=methods, best=best)
    for col, (key, sign) in COLUMNS.items():
        vals = {}
        for m in methods:
            r = bench[m]
            v = r['insertion'] - r['deletion'] if key == 'faith' else r[key]
            vals[m] = sign * v
        out[col] = correlations(c_score, vals)
        if col in ('ins-del', 'pointing'):
            top = top_k(vals, 3)
            out[f'top3 {col}'] = top
            out[f'best in top3 {col}'] = best in top
    c_lose = [m for m in methods if not compare[m].get('beats_random')]
    if rnd is not None:
        b_lose_di = [m for m in methods if not (
            bench[m]['deletion'] < rnd['deletion'] and
            bench[m]['insertion'] > rnd['insertion'])]
        b_lose_all = [m for m in methods if m in b_lose_di or not
                      bench[m]['pointing'] > rnd['pointing']]
        out['random (del+ins)'] = set_agreement(c_lose, b_lose_di, methods)
        out['random (bench criterion)'] = set_agreement(c_lose, b_lose_all,
                                                         methods)
    tested = [m for m in methods
              if m in bench.get('_sanity_tested', methods)
              and compare[m].get('sanity_passed') is not None]
    c_fail = [m for m in tested if compare[m]['sanity_passed'] is False]
    for label, fails in (sanity_fails or {}).items():
        out[f'sanity {label}'] = set_agreement(c_fail, fails, tested)
    if compare_clips and bench_clips:
        disc = []
        for a, b in combinations(methods, 2):
            bf = {m: bench[m]['insertion'] - bench[m]['deletion']
                  for m in (a, b)}
            s = (c_score[a] - c_score[b]) * (bf[a] - bf[b])
            if s < 0:
                disc.append(dict(
                    pair=[a, b],
                    compare_separates=paired_separates(
                        compare_clips[a], compare_clips[b]),
                    bench_separates=paired_separates(
                        bench_clips[a], bench_clips[b])))
        out['discordant ins-del'] = disc
        pairs = list(combinations(methods, 2))
        out['pairs separated by compare'] = sum(
            paired_separates(compare_clips[a], compare_clips[b])
            for a, b in pairs)
        out['pairs separated by benchmark'] = sum(
            paired_separates(bench_clips[a], bench_clips[b])
            for a, b in pairs)
        out['pairs'] = len(pairs)
    return out


# ------------------------------------------------------ shipped benchmark
def parse_shipped(path: str) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """The shipped benchmark's per-model tables (the first table of each
    model, "Localisation and faithfulness") and its sanity table from
    ``docs/benchmarks.md``: ``({model: {method: scores}},
    {model: {method: {passes, steps}}})`` (``steps``: the Spearman
    correlation after each cumulative step of the cascade)."""
    with open(path) as f:
        lines = f.read().splitlines()
    tables: Dict[str, dict] = {}
    sanity: Dict[str, dict] = {}
    current, section = None, None
    for line in lines:
        if line.startswith('## '):
            section = line[3:].strip()
            current = None
        if line.startswith('### ') and section == \
                'Localisation and faithfulness':
            title = line[4:].strip()
            current = next((k for k, t in TITLES.items() if t == title),
                           None)
            if current in tables:
                current = None
            elif current:
                tables[current] = {}
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if current and line.startswith('| ') and len(cells) == 9:
            try:
                v = [float(c) for c in cells[1:8]]
            except ValueError:
                continue
            tables[current][cells[0]] = dict(
                pointing=v[0], pointing_cell=v[1], energy=v[2],
                temporal_grounding=v[3], temporal_energy=v[4],
                deletion=v[5], insertion=v[6])
        if section and section.startswith('Sanity check') and \
                len(cells) == 7 and cells[0] in TITLES:
            if cells[6] in ('yes', 'no'):
                sanity.setdefault(cells[0], {})[cells[1]] = dict(
                    passes=cells[6] == 'yes',
                    steps=[float(x) for x in cells[5].split()])
    return tables, sanity


# --------------------------------------------------------------- the runs
def make_clips(kind: str, root: str, clips: int, seed: int) -> List[str]:
    """``clips`` clips (a multiple of 4: balanced) at ``seed``; the videos
    in the annotation file's order."""
    per_class = max(1, clips // 4)
    ann = osp.join(root, 'test.txt')
    if not osp.isfile(ann):
        if kind == 'benchmark':
            from mmxai.datasets.synthetic_benchmark import \
                generate_benchmark_dataset
            generate_benchmark_dataset(root, 'medium', splits=['test'],
                                       sizes=dict(test=(per_class, seed)))
        else:
            from mmxai.datasets.synthetic import generate_dataset
            generate_dataset(root, per_class, split='test', seed=seed)
    with open(ann) as f:
        return [osp.join(root, ln.split()[0]) for ln in f if ln.strip()]


def run_compare(name: str, videos: List[str], methods: List[str],
                budget: str) -> dict:
    from mmxai.apis import compare_methods
    cfg, ckpt, _ = MODELS[name]
    t0 = time.time()
    res = compare_methods(osp.join(ROOT, cfg), videos, methods=methods,
                          budget=budget, checkpoint=osp.join(ROOT, ckpt),
                          log=lambda s: print(f'[{name} compare '
                                              f'{time.time() - t0:5.0f} s] '
                                              f'{s}', flush=True))
    s = res.summary
    s['seconds_total'] = round(time.time() - t0, 1)
    return s


#: The demo config for the suite: its own test pipeline (same frames) with
#: the ground-truth meta keys of the benchmark configs (the demo config does
#: not pack ``gt_mask_path``, which pointing needs).
DEMO_WRAPPER = """_base_ = ['{base}']
gt_meta_keys = ('img_shape', 'img_key', 'video_id', 'timestamp', 'sample_idx',
                'frame_inds', 'crop_quadruple', 'gt_mask_path')
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=16, frame_interval=2, num_clips=1,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs', meta_keys=gt_meta_keys)
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


def run_benchmark(name: str, data_root: str, clips: int, methods: List[str],
                  work_dir: str, seed: int) -> dict:
    """``suite.evaluation.evaluate_model`` on the fresh clips; the demo
    model goes through a one-line config inheriting the demo config (the
    suite reads ``configs/benchmark/<name>_synthetic.py``)."""
    import suite.evaluation as ev
    cfg, ckpt, _ = MODELS[name]
    root, ckpt_dir = ev.ROOT, osp.join(ROOT, osp.dirname(ckpt))
    if name == 'demo':
        root = osp.join(work_dir, 'suite_root')
        os.makedirs(osp.join(root, 'configs', 'benchmark'), exist_ok=True)
        with open(osp.join(root, 'configs', 'benchmark',
                           'demo_synthetic.py'), 'w') as f:
            f.write(DEMO_WRAPPER.format(base=osp.join(ROOT, cfg)))
        ckpt_dir = osp.join(work_dir, 'suite_ckpt')
        os.makedirs(ckpt_dir, exist_ok=True)
        link = osp.join(ckpt_dir, 'demo_synthetic.pth')
        if not osp.lexists(link):
            os.symlink(osp.join(ROOT, ckpt), link)
    args = argparse.Namespace(
        ckpt_dir=ckpt_dir, data_root=data_root, clips=clips,
        methods=list(methods), steps=16, cell=8, skip_sanity=True,
        sanity_clips=4, data_seed=seed)
    old = ev.ROOT
    ev.ROOT = root
    try:
        res = ev.evaluate_model(name, args, sanity_check=False)
    finally:
        ev.ROOT = old
    res.pop('example', None)
    res.pop('curves', None)
    return res


def bench_summary(res: dict) -> Tuple[Dict[str, dict], Dict[str, list]]:
    """Per-method means (``suite.report.summarise``) and per-clip
    ``insertion - deletion`` (clips in a fixed order)."""
    from suite.report import summarise
    summ = summarise(res)
    clips: Dict[str, Dict[int, float]] = {}
    for r in res['rows']:
        clips.setdefault(r['method'], {})[r['clip']] = \
            r['insertion'] - r['deletion']
    return summ, {m: [v[k] for k in sorted(v)] for m, v in clips.items()}


def compare_view(s: dict) -> Tuple[dict, Dict[str, list]]:
    """compare's per-method numbers, its most faithful method (from the
    recommendation's first line) and per-clip scores (video order)."""
    out = {m: dict(faithfulness=v['faithfulness'],
                   deletion=v['deletion'], insertion=v['insertion'],
                   beats_random=v.get('beats_random'),
                   sanity_passed=v.get('sanity_passed'),
                   sanity_last=v.get('sanity_last'),
                   seconds=v.get('seconds'))
           for m, v in s['methods'].items()}
    mt = re.match(r'most faithful here: (\S+) ', s['recommendation'][0])
    out['_best'] = mt.group(1) if mt else None
    clips = {m: [c['methods'][m]['faithfulness'] for c in s['per_clip']
                 if m in c['methods']] for m in s['methods']}
    return out, clips


def rise_probe(name: str, video: str, masks: Sequence[int] = (32, 128)
               ) -> dict:
    """Why RISE "fails" compare's sanity check: per mask count, the rank
    correlation of the trained model's map (mask seed 0) with (i) the map
    of the model whose head and last backbone stage are re-initialised
    (compare's cascade), same masks, (ii) the same after the whole
    :func:`~mmxai.evaluation.default_cascade`, (iii) the trained model's
    map from other masks (seed 1), (iv) the masks' coverage alone
    ``sum_i M_i`` (the map of a model whose output never changes)."""
    import torch
    from mmxai.apis import init_recognizer
    from mmxai.apis.compare import budget_settings, sanity_cascade
    from mmxai.apis.video_input import load_video_sample
    from mmxai.evaluation import default_cascade
    from mmxai.evaluation.sanity import (cascading_randomization,
                                         rank_correlation)
    from mmxai.explainers import build_explainer
    cfg, ckpt, _ = MODELS[name]
    model = init_recognizer(osp.join(ROOT, cfg), osp.join(ROOT, ckpt))
    sample = load_video_sample(video, model.cfg)
    with torch.no_grad():
        inputs = model.data_preprocessor(sample.data, False)['inputs']
    base = build_explainer('rise', model)
    with torch.no_grad():
        target = int(base.adapter.scores(inputs).argmax(-1)[0])
    shape = base.adapter.to_video(inputs).shape
    out = {}
    for n in masks:
        st = dict(budget_settings('fast', 'rise', shape), num_masks=n)

        def explain(mdl, seed=0, st=st):
            e = build_explainer('rise', mdl, seed=seed, **st)
            return e.attribute(inputs, target).raw_maps[0, 0]

        ref = explain(model)
        cheap = cascading_randomization(explain, model,
                                        sanity_cascade(model))
        full = cascading_randomization(explain, model,
                                       default_cascade(model))
        # coverage: with a score that never changes the RISE map is
        # sum_i M_i / (N p); the same masks (seed 0), a constant scorer
        e = build_explainer('rise', model, seed=0, **st)
        orig = e.view_scorer

        def constant(*a, orig=orig, **k):
            scores, targets, scorer = orig(*a, **k)

            class Const:
                video, probs = scorer.video, scorer.probs

                def __call__(self, b, v, clips):
                    return torch.ones(clips.shape[0], scores.shape[1])
            return scores, targets, Const()

        e.view_scorer = constant
        cover = e.attribute(inputs, target).raw_maps[0, 0]
        out[n] = dict(
            head_last=cheap[-1]['spearman'], full=full[-1]['spearman'],
            other_masks=rank_correlation(ref, explain(model, seed=1)),
            coverage=rank_correlation(ref, cover))
    return out


# ----------------------------------------------------------------- report
def _f(x, d=2):
    return '-' if x is None or (isinstance(x, float) and x != x) \
        else f'{x:.{d}f}'


def _corr(c: dict) -> str:
    p = f' (p {c["tau_p"]:.2f})' if 'tau_p' in c and c['tau_p'] == \
        c['tau_p'] else ''
    return f'{_f(c["tau"])}{p} / {_f(c["rho"])}'


def _flags(a: dict) -> str:
    if a['equal']:
        return f'same ({", ".join(a["both"]) or "none"})'
    parts = []
    if a['both']:
        parts.append('both: ' + ', '.join(a['both']))
    if a['only_a']:
        parts.append('only compare: ' + ', '.join(a['only_a']))
    if a['only_b']:
        parts.append('only benchmark: ' + ', '.join(a['only_b']))
    return f'{a["agree"]}/{a["of"]} agree; ' + '; '.join(parts)


def report(results: Dict[str, dict], args) -> str:
    lines = ['| model | ref | n | tau / rho vs ins-del | vs -deletion | '
             'vs insertion | vs pointing | vs pointing (cell) | '
             'most faithful | in top 3 ins-del | in top 3 pointing |',
             '|---|---|---:|---|---|---|---|---|---|---|---|']
    for name, r in results.items():
        for ref in ('fresh', 'shipped'):
            a = r['agreement'].get(ref)
            if not a:
                continue
            lines.append(
                f'| {name} | {ref} | {a["ins-del"]["n"]} | '
                + ' | '.join(_corr(a[c]) for c in COLUMNS)
                + f' | {a["best"]} | '
                f'{"yes" if a["best in top3 ins-del"] else "no"} '
                f'({", ".join(a["top3 ins-del"])}) | '
                f'{"yes" if a["best in top3 pointing"] else "no"} '
                f'({", ".join(a["top3 pointing"])}) |')
    lines += ['', '| model | ref | do not beat random (compare vs '
              'benchmark del+ins) | vs benchmark criterion (+pointing) | '
              'fail sanity: compare vs shipped table (full cascade) | '
              'vs shipped table at compare\'s depth (head + last stage) |',
              '|---|---|---|---|---|---|']
    for name, r in results.items():
        for ref in ('fresh', 'shipped'):
            a = r['agreement'].get(ref)
            if not a:
                continue
            san = [_flags(a[k]) if k in a else 'n/a (no benchmark sanity '
                   'table)' for k in ('sanity full cascade',
                                      'sanity head + last stage')]
            lines.append(f'| {name} | {ref} | '
                         f'{_flags(a["random (del+ins)"])} | '
                         f'{_flags(a["random (bench criterion)"])} | '
                         f'{san[0]} | {san[1]} |')
    lines += ['', '| model | ref | tau / rho: fresh ins-del vs shipped '
              'ins-del | fresh ins-del vs fresh pointing | discordant '
              'pairs (ins-del) | of which compare / benchmark separates '
              '| pairs compare / benchmark separates |',
              '|---|---|---|---|---|---|---|']
    for name, r in results.items():
        a = r['agreement']['fresh']
        st = r.get('stability', {})
        disc = a.get('discordant ins-del', [])
        lines.append(
            f'| {name} | fresh | '
            f'{_corr(st["fresh vs shipped"]) if "fresh vs shipped" in st else "-"}'
            f' | {_corr(st["ins-del vs pointing"])} | {len(disc)} | '
            f'{sum(d["compare_separates"] for d in disc)} / '
            f'{sum(d["bench_separates"] for d in disc)} | '
            f'{a.get("pairs separated by compare", "-")} / '
            f'{a.get("pairs separated by benchmark", "-")} of '
            f'{a.get("pairs", "-")} |')
    lines += ['', 'Per method (fresh clips): compare ins-del [95 % CI '
              'half-width] / benchmark ins-del / benchmark pointing; '
              'compare beats random, sanity (rho after head + last stage)', '']
    for name, r in results.items():
        c, b = r['compare'], r['bench']
        rows = sorted((m for m in c if not m.startswith('_') and m in b),
                      key=lambda m: -c[m]['faithfulness'])
        lines.append(f'- {name}: ' + '; '.join(
            f'{m} {_f(c[m]["faithfulness"], 3)} '
            f'[{_f(r["compare_ci"].get(m), 3)}] / '
            f'{_f(b[m]["insertion"] - b[m]["deletion"], 3)} / '
            f'{_f(b[m]["pointing"])} '
            f'{"R" if c[m]["beats_random"] else "r"}'
            f'{"S" if c[m]["sanity_passed"] else "s"}'
            f'({_f(c[m]["sanity_last"])})'
            for m in rows))
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--clips', type=int, default=8)
    p.add_argument('--seed', type=int, default=2026)
    p.add_argument('--budget', default='fast', choices=['fast', 'full'])
    p.add_argument('--methods', nargs='+', default=None,
                   help="default: compare's default methods that the "
                   'benchmark also ranks')
    p.add_argument('--work-dir', default='work_dirs/bench_compare_agreement')
    p.add_argument('--shipped', default='docs/benchmarks.md')
    p.add_argument('--reuse', action='store_true')
    p.add_argument('--rise-probe', action='store_true',
                   help='only the RISE sanity probe (rise_probe) on the '
                   "first clip of each model; writes rise_probe.json")
    return p.parse_args(argv)


def default_methods() -> List[str]:
    from mmxai.apis.compare import DEFAULT_METHODS
    from suite.settings import METHOD_SETTINGS, SKIPPED
    return [m for m in DEFAULT_METHODS
            if m in METHOD_SETTINGS and m not in SKIPPED]


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    os.environ.setdefault('MMXAI_NO_PROGRESS', '1')
    import warnings
    warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(1)
    import mmxai  # noqa: F401
    methods = args.methods or default_methods()
    os.makedirs(args.work_dir, exist_ok=True)
    shipped, shipped_sanity = parse_shipped(args.shipped)
    results: Dict[str, dict] = {}
    t_all = time.time()
    print(f'[agreement] methods {methods}, load {os.getloadavg()}',
          flush=True)
    if args.rise_probe:
        probe = {}
        for name in args.models:
            kind = MODELS[name][2]
            videos = make_clips(kind, osp.join(
                args.work_dir, f'data_{kind}_seed{args.seed}'), args.clips,
                args.seed)
            probe[name] = rise_probe(name, videos[0])
            print(f'[rise probe] {name}: {probe[name]}', flush=True)
        with open(osp.join(args.work_dir, 'rise_probe.json'), 'w') as f:
            json.dump(probe, f, indent=1)
        return 0
    for name in args.models:
        kind = MODELS[name][2]
        data_root = osp.join(args.work_dir, f'data_{kind}_seed{args.seed}')
        videos = make_clips(kind, data_root, args.clips, args.seed)
        path = osp.join(args.work_dir, f'{name}.json')
        if args.reuse and osp.isfile(path):
            with open(path) as f:
                raw = json.load(f)
        else:
            load0 = os.getloadavg()
            t0 = time.time()
            comp = run_compare(name, videos, methods, args.budget)
            t1 = time.time()
            bench = run_benchmark(name, data_root, len(videos), methods,
                                  args.work_dir, args.seed)
            raw = dict(compare=comp, bench=bench, load_start=load0,
                       load_end=os.getloadavg(),
                       compare_s=round(t1 - t0, 1),
                       bench_s=round(time.time() - t1, 1),
                       methods=methods, budget=args.budget,
                       clips=len(videos), seed=args.seed)
            with open(path, 'w') as f:
                json.dump(raw, f)
        c, c_clips = compare_view(raw['compare'])
        b, b_clips = bench_summary(raw['bench'])
        # the compare clip order is the annotation order; the benchmark's
        # rows are keyed by dataset index (the same order): align them
        # the benchmark's only sanity verdict is its shipped table (4 clips
        # of seed 102): after its whole cascade, and at compare's depth
        # (head + last backbone stage: the cascade's 2nd step)
        san = shipped_sanity.get(name, {})
        fails = {'full cascade': [m for m, d in san.items()
                                  if not d['passes']],
                 'head + last stage': [m for m, d in san.items()
                                       if d['steps'][1] >= SANITY_PASS]
                 } if san else None
        b['_sanity_tested'] = list(san)
        agree = dict(fresh=agreement(c, b, fails, c_clips, b_clips))
        r = dict(compare=c, bench=b, agreement=agree,
                 compare_ci={m: v.get('faithfulness_ci95') for m, v in
                             raw['compare']['methods'].items()},
                 preds=sorted({(row['label'], row['pred']) for row in
                               raw['bench']['rows']}),
                 timing=dict(compare_s=raw['compare_s'],
                             bench_s=raw['bench_s'],
                             load_start=raw['load_start'],
                             load_end=raw['load_end']))
        bf = {m: b[m]['insertion'] - b[m]['deletion'] for m in b
              if m in c}
        bp = {m: b[m]['pointing'] for m in b if m in c}
        r['stability'] = {'ins-del vs pointing': correlations(bf, bp)}
        if name in shipped:
            s = dict(shipped[name])
            s['_sanity_tested'] = list(san)
            agree['shipped'] = agreement(c, s, fails)
            sf = {m: s[m]['insertion'] - s[m]['deletion'] for m in s
                  if m in bf}
            r['stability']['fresh vs shipped'] = correlations(bf, sf)
        results[name] = r
        print(f'[agreement] {name}: compare {raw["compare_s"]} s, '
              f'benchmark {raw["bench_s"]} s, load {raw["load_start"]} -> '
              f'{raw["load_end"]}', flush=True)
    md = report(results, args)
    with open(osp.join(args.work_dir, 'agreement.md'), 'w') as f:
        f.write(md)
    with open(osp.join(args.work_dir, 'agreement.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    print(md)
    print(f'[agreement] {time.time() - t_all:.0f} s, load '
          f'{os.getloadavg()}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
