#!/usr/bin/env python
"""Speed and peak memory of every mmxai method against its anchors, one run.

Same model and input for every case: the toolbox's I3D-R50 config (random
weights) on one preprocessed clip (default 1x3x8x64x64). Cases:

* a plain forward, and a plain forward + backward (all parameters);
* MMAction2's built-in ``mmaction.utils.GradCAM`` (map computation only,
  ``_calculate_localization_map``);
* Captum's ``LayerGradCam`` (+ trilinear upsampling), ``Occlusion`` and
  ``IntegratedGradients`` on the same forward function (scores as
  ``predict``), with the same budgets as the mmxai equivalents;
* every registered mmxai method (benchmark settings, see
  ``suite/settings.py``'s ``METHOD_SETTINGS``; occlusion window = Captum's).

Times: median of ``--repeats`` interleaved repeats in one process (cases
slower than ``--slow`` seconds run once). Ratios (mmxai against its anchors)
are paired: in each of ``--rounds`` rounds the two cases run back to back,
in alternating order, and the round's ratio is their quotient; reported are
the median ratio over the rounds and its 5-95 % range (a ratio of medians
taken minutes apart moves with the machine's load: the earlier 0.51 for
mmxai gradcam / Captum LayerGradCam was one). Peak memory, measured on each
case's first (warm-up) run: the rise of the process's peak resident set size
over its resident size just before the run, after returning freed heap to
the OS (``malloc_trim``) and resetting the kernel's peak counter
(``/proc/self/clear_refs``, Linux). ``tracemalloc`` does not see torch's CPU
allocations, and ``ru_maxrss`` cannot be reset, so in one process an earlier
case's peak would hide the later ones (and a subprocess per case would cost
an import and a model build each).

    python tools/benchmarks/bench_speed.py [--frames 8] [--size 64]
        [--repeats 6] [--rounds 40] [--no-memory] [--out speed.md]
"""
import argparse
import gc
import os.path as osp
import platform
import statistics
import subprocess
import sys
import time
from typing import Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

LAYER = 'backbone.layer4'
#: Smaller budgets than the localisation benchmark (times scale linearly
#: with them): the speed table must run in minutes on 2 cores.
SPEED_BUDGETS = {
    'integrated_gradients': dict(n_steps=8),
    'smoothgrad': dict(n_samples=4),
    'rise': dict(num_masks=32),
    'lime': dict(num_samples=32),
    'kernel_shap': dict(num_samples=32),
    'step': dict(max_iter=10, core_start=5),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--frames', type=int, default=8)
    p.add_argument('--size', type=int, default=64)
    p.add_argument('--repeats', type=int, default=6)
    p.add_argument('--rounds', type=int, default=40,
                   help='rounds of each paired ratio (0: no ratios)')
    p.add_argument('--slow', type=float, default=8.0,
                   help='cases slower than this (s) run once')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--no-memory', action='store_true')
    p.add_argument('--methods', nargs='+', default=None)
    p.add_argument('--out', default=None, help='write a Markdown report')
    return p.parse_args(argv)


def build_cases(args):
    """``(model, {case name: callable})`` on one shared input."""
    import torch
    import torch.nn.functional as F
    from bench_model import random_i3d_and_clip
    from mmaction.utils import GradCAM as BuiltinGradCAM
    from mmxai.errors import MMXAIError
    from mmxai.explainers import build_explainer, method_names
    from mmxai.utils.layers import get_layer
    from suite.settings import SKIPPED, method_settings
    if args.threads:
        torch.set_num_threads(args.threads)

    model, data = random_i3d_and_clip(args.frames, args.size)
    with torch.no_grad():
        inputs = model.data_preprocessor(data, False)['inputs']
    from mmxai.adapters import build_adapter
    adapter = build_adapter(model)
    with torch.no_grad():
        target = int(adapter.scores(inputs).argmax())
    t, hw = args.frames, args.size
    occ_window = (max(1, t // 4), hw // 2, hw // 2)
    ig_steps = SPEED_BUDGETS['integrated_gradients']['n_steps']

    def forward_fn(x):
        return adapter.scores(x)

    def plain_forward():
        with torch.no_grad():
            d = model.data_preprocessor(data, False)
            model(d['inputs'], d['data_samples'], mode='predict')

    def forward_backward():
        d = model.data_preprocessor(data, False)
        feats, kw = model.extract_feat(d['inputs'], test_mode=True)
        model.cls_head(feats, **kw).max(-1)[0].sum().backward()
        model.zero_grad(set_to_none=True)

    # the last block's ReLU output = the output of backbone.layer4
    builtin = BuiltinGradCAM(model, 'backbone/layer4/2/relu')

    def builtin_gradcam():
        builtin._calculate_localization_map(data, use_labels=False)
        model.zero_grad(set_to_none=True)

    from captum.attr import IntegratedGradients, LayerGradCam, Occlusion
    lgc = LayerGradCam(forward_fn, get_layer(model, LAYER))

    def captum_layergradcam():
        a = lgc.attribute(inputs, target=target, relu_attributions=True)
        F.interpolate(a, size=(t, hw, hw), mode='trilinear',
                      align_corners=False)
        model.zero_grad(set_to_none=True)

    occ = Occlusion(forward_fn)

    def captum_occlusion():
        with torch.no_grad():
            occ.attribute(inputs, sliding_window_shapes=(1, 3) + occ_window,
                          strides=(1, 3) + occ_window, target=target,
                          baselines=0.0, perturbations_per_eval=8)

    ig = IntegratedGradients(forward_fn)

    def captum_ig():
        ig.attribute(inputs, target=target, n_steps=ig_steps,
                     internal_batch_size=8)
        model.zero_grad(set_to_none=True)

    cases = {'plain forward': plain_forward,
             'plain forward+backward': forward_backward,
             'MMAction2 built-in GradCAM': builtin_gradcam,
             'Captum LayerGradCam': captum_layergradcam,
             f'Captum Occlusion (window {occ_window})': captum_occlusion,
             f'Captum IntegratedGradients ({ig_steps} steps)': captum_ig}
    na = {}
    notes = {'plain forward': 'no grad', 'Captum LayerGradCam':
             'backbone.layer4, + trilinear upsampling'}
    n_win = -(-t // occ_window[0]) * (-(-hw // occ_window[1])) ** 2
    notes[f'Captum Occlusion (window {occ_window})'] = f'{n_win} windows'
    notes[f'Captum IntegratedGradients ({ig_steps} steps)'] = \
        f'n_steps={ig_steps}'
    names = args.methods or [m for m in method_names() if m not in SKIPPED]
    for m in names:
        settings = method_settings(m)
        settings.update(SPEED_BUDGETS.get(m, {}))
        if m == 'occlusion':  # Captum's work: windows, batch, logits, 0
            settings.update(window=occ_window, stride=occ_window,
                            batch_size=8, score='logit', baseline=0.0)
        if m == 'integrated_gradients':  # Captum's internal batch
            settings['batch_size'] = 8
        if m in ('gradcam', 'gradcam++'):
            settings['target_layers'] = [LAYER]
        try:
            ex = build_explainer(m, model, **settings)
        except (MMXAIError, TypeError, ValueError) as e:
            na[f'mmxai {m}'] = str(e).split('\n')[0][:120]
            continue
        cases[f'mmxai {m}'] = (lambda ex=ex: ex.attribute(inputs, target))
        budget = {k: v for k, v in settings.items() if k in (
            'n_steps', 'n_samples', 'num_masks', 'num_samples', 'max_iter',
            'window')}
        if budget:
            notes[f'mmxai {m}'] = ', '.join(f'{k}={v}'
                                            for k, v in budget.items())
    return model, cases, na, notes


def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise OSError(key)


def run_with_peak(fn) -> Tuple[float, float]:
    """``(seconds, peak MB)`` of one call of ``fn``: the rise of the peak
    resident set size over the resident size before the call (freed heap
    returned to the OS first, peak reset through ``/proc/self/clear_refs``;
    Linux only, NaN elsewhere)."""
    import ctypes
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        rss0 = _status_kb('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current RSS
        ok = True
    except OSError:
        ok = False
    t0 = time.perf_counter()
    fn()
    sec = time.perf_counter() - t0
    peak = (_status_kb('VmHWM') - rss0) / 1024 if ok else float('nan')
    return sec, peak


#: The paired ratios: (numerator, denominator); ``None`` entries are looked
#: up by prefix (the Captum cases' names carry their budgets).
RATIOS = [('mmxai gradcam', 'plain forward+backward'),
          ('mmxai gradcam', 'MMAction2 built-in GradCAM'),
          ('mmxai gradcam', 'Captum LayerGradCam'),
          ('mmxai occlusion', 'Captum Occlusion'),
          ('mmxai integrated_gradients', 'Captum IntegratedGradients'),
          ('mmxai saliency_tubes', 'plain forward')]
RATIO_NOTES = {'Captum Occlusion': ' (same windows)',
               'Captum IntegratedGradients': ' (same steps)'}


def quantile(values, q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of ``values``."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def paired_ratios(fn_a, fn_b, rounds: int):
    """``[t_a / t_b]`` of ``rounds`` rounds; each round runs ``fn_a`` and
    ``fn_b`` back to back, ``a`` first in even rounds and ``b`` first in
    odd ones (so neither always gets the other's warm caches)."""
    out = []
    for r in range(rounds):
        order = (fn_a, fn_b) if r % 2 == 0 else (fn_b, fn_a)
        t = {}
        for fn in order:
            t0 = time.perf_counter()
            fn()
            t[fn] = time.perf_counter() - t0
        out.append(t[fn_a] / t[fn_b])
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    t_all = time.time()
    _, cases, na, notes = build_cases(args)
    times = {k: [] for k in cases}
    mem = {}
    for name, fn in list(cases.items()):  # warm-up + memory; slow cases
        try:
            sec, peak = run_with_peak(fn)
        except Exception as e:  # a method that fails on this model
            na[name] = f'{type(e).__name__}: {str(e).splitlines()[0][:100]}'
            del cases[name], times[name]
            continue
        times[name].append(sec)
        if not args.no_memory:
            mem[name] = peak
    for _ in range(args.repeats - 1):
        for name, fn in cases.items():  # interleaved: drift hits all alike
            if times[name][0] > args.slow:
                continue
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    # the warm-up run is dropped where there are repeats
    med = {k: statistics.median(v[1:] if len(v) > 1 else v)
           for k, v in times.items()}
    fwd, fb = med['plain forward'], med['plain forward+backward']
    machine = (f'{platform.processor() or platform.machine()}, '
               f'{torch.get_num_threads()} threads, torch {torch.__version__}')
    lines = [f'I3D-R50 (toolbox config, random weights), input 1x3x'
             f'{args.frames}x{args.size}x{args.size}, CPU ({machine}); median '
             f'of {args.repeats - 1} interleaved repeats after a warm-up (cases '
             f'over {args.slow:g} s: one run). Peak memory: rise of the peak '
             'RSS over the RSS before the case\'s first run (peak counter '
             'reset through /proc/self/clear_refs).', '',
             '| case | seconds | / forward | / forward+backward | runs | '
             'peak memory (MB) | budget |', '|---|---:|---:|---:|---:|---:|---|']
    for k, s in med.items():
        m = mem.get(k)
        lines.append(f'| {k} | {s:.3f} | {s / fwd:.1f}x | {s / fb:.2f}x | '
                     f'{max(1, len(times[k]) - 1)} | '
                     + ('-' if m is None else f'{m:.0f}') + ' | '
                     + notes.get(k, '') + ' |')
    for k, why in na.items():
        lines.append(f'| {k} | n/a ({why}) | | | | | |')

    if args.rounds > 0:
        lines += ['', f'Paired ratios: {args.rounds} rounds in one process, '
                  'each running the two cases back to back in alternating '
                  'order; the median of the rounds\' ratios and their 5-95 % '
                  'range (cases over {:g} s: not paired).'.format(args.slow),
                  '', '| ratio | median | 5-95 % | rounds |',
                  '|---|---:|---|---:|']
        for a, b in RATIOS:
            b_name = next((k for k in cases if k.startswith(b)), None)
            label = f'{a} / {b}{RATIO_NOTES.get(b, "")}'
            if a not in cases or b_name is None or max(
                    med[a], med[b_name]) > args.slow:
                lines.append(f'| {label} | n/a | | |')
                continue
            r = paired_ratios(cases[a], cases[b_name], args.rounds)
            lines.append(f'| {label} | {statistics.median(r):.2f} | '
                         f'{quantile(r, 0.05):.2f}-{quantile(r, 0.95):.2f} | '
                         f'{len(r)} |')
    lines += ['', f'Command: `python tools/benchmarks/bench_speed.py '
              f'--frames {args.frames} --size {args.size} --repeats '
              f'{args.repeats} --rounds {args.rounds}` '
              f'({(time.time() - t_all) / 60:.1f} min).']
    report = '\n'.join(lines)
    print(report)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(report + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
