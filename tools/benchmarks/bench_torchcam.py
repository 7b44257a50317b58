#!/usr/bin/env python
"""mmxai's CAMs against torch-cam's on the same model, clip and layer:
time side by side (paired rounds, alternating order, median and range of
the per-round ratios), the maps' agreement, and peak memory per method.

The toolbox's I3D-R50 config with random weights. torch-cam hooks a plain
module mapping ``[N, C, T, H, W]`` to the recognizer's pre-softmax scores
(its layer names gain ``net.``). mmxai times ``attribute()`` (its whole
call: forwards, backward, map upsampled to the input); torch-cam the
forward it needs to hook the layer plus its map (``normalized=False``).

Suites (each prints a markdown table)::

    # gradient CAMs, 1x3x16x224x224, backbone.layer4
    python tools/benchmarks/bench_torchcam.py --suite grad [--rounds 5]
    # Score-CAM family, all channels, same batch size; plus the bare
    # batched forwards Score-CAM needs (C masked clips, batch_size a batch)
    python tools/benchmarks/bench_torchcam.py --suite score [--rounds 3]
        [--score-frames 8 --score-size 32 --layer backbone.layer1 --samples 2]
    # peak memory: every (method, impl) in a fresh process under
    # /usr/bin/time -v (this driver), or one case by hand:
    python tools/benchmarks/bench_torchcam.py --suite memory
    python tools/benchmarks/bench_torchcam.py --case gradcam --impl torchcam

Maps are compared at the input resolution after min-max normalising each
to [0, 1] (mmxai's ``layer_maps`` and torch-cam's map upsampled the same
way): the max absolute difference.
"""
import argparse
import os
import os.path as osp
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from bench_model import random_i3d_and_clip  # noqa: E402

#: gradient CAMs: mmxai method -> (torch-cam class, mmxai opts, theirs)
GRAD = {
    'gradcam': ('GradCAM', {}, {}),
    # torch-cam 0.5's GradCAMpp divides a copy (alpha = g^2): maps differ
    'gradcam++': ('GradCAMpp', {'denominator': 'sum_ag3'}, {}),
    'xgradcam': ('XGradCAM', {}, {}),
    'layercam': ('LayerCAM', {}, {}),
    # the same work: 4 noisy copies, std 0.3 in the model's input space
    'smooth_gradcam++': ('SmoothGradCAMpp',
                         {'num_samples': 4, 'std': 0.3,
                          'denominator': 'sum_ag3'},
                         {'num_samples': 4, 'std': 0.3}),
}
#: Score-CAM family (``samples``: filled from --samples for both)
SCORE = {
    'scorecam': ('ScoreCAM', {}, {}),
    'sscam': ('SSCAM', {'std': 2.0}, {'std': 2.0}),
    'iscam': ('ISCAM', {}, {}),
}
GRAD_LAYER = 'backbone.layer4'
KB = 1024


def rss_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux: KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB


def load(args, score: bool):
    """Model, score module, ``inputs [1, 1, C, T, H, W]``, ``x [1, C, T,
    H, W]`` and the predicted class."""
    import torch
    from torch import nn
    from mmxai.adapters import build_adapter

    frames, size = ((args.score_frames, args.score_size) if score else
                    (args.frames, args.size))
    model, data = random_i3d_and_clip(frames, size)
    inputs = model.data_preprocessor(data, False)['inputs']

    class ScoreModule(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.adapter = build_adapter(net)

        def forward(self, x):
            return self.adapter.scores(x.unsqueeze(1))

    module = ScoreModule(model).eval()
    x = inputs[:, 0].detach().clone()
    with torch.no_grad():
        target = int(module(x).argmax(-1))
    return model, module, inputs, x, target


def runners(method, impl, args, model, module, inputs, x, target):
    """``(call, finish)``: ``call()`` runs the method once and returns its
    raw output; ``finish(out)`` gives the map ``[T, H, W]`` at the input
    resolution (None for the bare forwards); ``cleanup()`` too."""
    import torch
    import torchcam.methods as tc
    from mmxai.adapters.base import upsample_maps
    from mmxai.explainers import build_explainer

    score = method in SCORE or method == 'bare'
    layer = args.layer if score else GRAD_LAYER
    if method == 'bare':
        return bare_forwards(args, model, module, inputs, x, layer)
    theirs, ours_opts, their_opts = (SCORE if score else GRAD)[method]
    ours_opts, their_opts = dict(ours_opts), dict(their_opts)
    if score:
        ours_opts['batch_size'] = their_opts['batch_size'] = args.batch_size
        if method != 'scorecam':
            ours_opts['num_samples'] = args.samples
            their_opts['num_samples'] = args.samples
    if impl == 'mmxai':
        ours = build_explainer(method, model, target_layers=[layer],
                               **ours_opts)

        def call():
            return ours.attribute(inputs, target)

        def finish(out):
            return out.layer_maps[layer][0, 0]
        return call, finish, lambda: None
    ext = getattr(tc, theirs)(module, 'net.' + layer,
                              input_shape=tuple(x.shape[1:]), **their_opts)

    def call():
        with torch.set_grad_enabled(not score):
            scores = module(x)
        torch.manual_seed(0)  # mmxai's noise stream for view 0, step 0
        return ext([target], scores, normalized=False)[0]

    def finish(out):
        return upsample_maps(out.detach().unsqueeze(1),
                             inputs.shape[-3:])[0, 0]
    return call, finish, ext.remove_hooks


def bare_forwards(args, model, module, inputs, x, layer):
    """The forwards Score-CAM needs and nothing else: ``C`` masked clips
    (``C`` the layer's channels), ``batch_size`` clips a forward, the
    masks made beforehand (not timed)."""
    import torch
    from mmxai.utils.hooks import capture_activations
    with torch.no_grad(), capture_activations(model, [layer]) as store:
        module(x)
        channels = store.collect()[layer].shape[1]
    g = torch.Generator().manual_seed(0)
    size = min(args.batch_size, channels)
    clips = x * torch.rand((size, 1, *x.shape[2:]), generator=g)
    sizes = [min(size, channels - i) for i in range(0, channels, size)]

    def call():
        with torch.no_grad():
            for n in sizes:
                module(clips[:n])
        return None
    return call, lambda out: None, lambda: None


def map_diff(a, b) -> float:
    """max |n(a) - n(b)|, ``n`` the min-max to [0, 1]."""
    def n(m):
        m = m.double()
        lo, hi = m.min(), m.max()
        return (m - lo) / (hi - lo) if hi > lo else m * 0
    return float((n(a) - n(b)).abs().max())


def paired(impls, rounds):
    """Wall and CPU times (this process's, ``time.process_time``: with one
    thread, the work done, without the waits for the cores the other jobs
    hold) of ``impls {name: call}`` over ``rounds`` rounds, the order
    reversed every other round; the outputs of the last round."""
    names = list(impls)
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}
    outs = {}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            c0, t0 = time.process_time(), time.perf_counter()
            outs[k] = impls[k]()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return times, cpu, outs


def ratios(a, b, scale=1):
    return [x / (scale * y) for x, y in zip(a, b)]


def spread(values):
    v = sorted(values)
    return statistics.median(v), v[0], v[-1]


def load_avg() -> str:
    return '{:.2f} {:.2f} {:.2f}'.format(*os.getloadavg())


def header(args, shape, layer, rounds):
    import torch
    print(f'\nI3D-R50 (random init), {shape}, layer {layer}, {rounds} '
          f'paired rounds (alternating order), torch {torch.__version__}, '
          f'{platform.processor() or platform.machine()}, '
          f'{torch.get_num_threads()} threads')


def suite_grad(args):
    model, module, inputs, x, target = load(args, score=False)
    # warm-up: one call of each implementation (oneDNN set-up, allocator)
    for impl in ('mmxai', 'torchcam'):
        call, _, cleanup = runners('gradcam', impl, args, model, module,
                                   inputs, x, target)
        call()
        cleanup()
    rows = []
    for method in args.methods:
        if method not in GRAD:
            continue
        rs = {impl: runners(method, impl, args, model, module, inputs, x,
                            target) for impl in ('mmxai', 'torchcam')}
        before = load_avg()
        times, cpu, outs = paired({k: v[0] for k, v in rs.items()},
                                  args.rounds)
        maps = {k: rs[k][1](outs[k]) for k in rs}
        for k in rs:
            rs[k][2]()
        wall = ratios(times['mmxai'], times['torchcam'])
        work = ratios(cpu['mmxai'], cpu['torchcam'])
        rows.append((method, GRAD[method][0], spread(times['mmxai'])[0],
                     spread(times['torchcam'])[0], spread(wall),
                     spread(work), map_diff(maps['mmxai'], maps['torchcam']),
                     f'{before} / {load_avg()}'))
        print(f'{method}: wall ratios {[round(r, 3) for r in wall]} cpu '
              f'{[round(r, 3) for r in work]} load {rows[-1][-1]}',
              flush=True)
    header(args, f'1x3x{args.frames}x{args.size}x{args.size}', GRAD_LAYER,
           args.rounds)
    print('| mmxai | torch-cam | mmxai s | torch-cam s | wall ratio '
          '(median, range) | CPU-time ratio (median, range) | max map diff '
          '(min-max normalised) | load before / after |')
    print('|---|---|---:|---:|---|---|---:|---|')
    for m, t, a, b, (r, lo, hi), (c, clo, chi), e, ld in rows:
        print(f'| `{m}` | `{t}` | {a:.2f} | {b:.2f} | {r:.2f} ({lo:.2f}-'
              f'{hi:.2f}) | {c:.2f} ({clo:.2f}-{chi:.2f}) | {e:.1e} | {ld} |')


def suite_score(args):
    model, module, inputs, x, target = load(args, score=True)
    bare, _, _ = runners('bare', 'bare', args, model, module, inputs, x,
                         target)
    bare()  # warm-up: the batch shapes
    rows = []
    for method in args.methods:
        if method not in SCORE:
            continue
        rs = {impl: runners(method, impl, args, model, module, inputs, x,
                            target) for impl in ('mmxai', 'torchcam')}
        calls = {k: v[0] for k, v in rs.items()}
        calls['bare'] = bare
        before = load_avg()
        times, cpu, outs = paired(calls, args.rounds)
        maps = {k: rs[k][1](outs[k]) for k in rs}
        for k in rs:
            rs[k][2]()
        passes = 1 if method == 'scorecam' else args.samples
        found = [(spread(ratios(t['mmxai'], t['torchcam'])),
                  spread(ratios(t['mmxai'], t['bare'], passes)),
                  spread(ratios(t['torchcam'], t['bare'], passes)))
                 for t in (times, cpu)]
        rows.append((method, SCORE[method][0], passes,
                     spread(times['mmxai'])[0], spread(times['torchcam'])[0],
                     passes * spread(times['bare'])[0], *found[0],
                     *found[1], map_diff(maps['mmxai'], maps['torchcam']),
                     f'{before} / {load_avg()}'))
        print(f'{method}: wall {ratios(times["mmxai"], times["bare"], passes)}'
              f' cpu {ratios(cpu["mmxai"], cpu["bare"], passes)} (mmxai / '
              f'bare) load {rows[-1][-1]}', flush=True)
    from mmxai.utils.hooks import capture_activations
    import torch
    with torch.no_grad(), capture_activations(model, [args.layer]) as st:
        module(x)
        shape = tuple(st.collect()[args.layer].shape[1:])
    header(args, f'1x3x{args.score_frames}x{args.score_size}x'
           f'{args.score_size}', f'{args.layer} (activation {shape}, all '
           f'channels), batch size {args.batch_size}, SS-CAM / IS-CAM '
           f'{args.samples} samples', args.rounds)
    print('| mmxai | torch-cam | passes | mmxai s | torch-cam s | bare '
          'forwards s | wall: mmxai / torch-cam | mmxai / bare | torch-cam / '
          'bare | CPU time: mmxai / torch-cam | mmxai / bare | torch-cam / '
          'bare | max map diff | load before / after |')
    print('|---|---|---:|---:|---:|---:|---|---|---|---|---|---|---:|---|')

    def cell(v):
        return f'{v[0]:.2f} ({v[1]:.2f}-{v[2]:.2f})'
    for row in rows:
        m, t, p, a, b, c = row[:6]
        print(f'| `{m}` | `{t}` | {p} | {a:.2f} | {b:.2f} | {c:.2f} | ' +
              ' | '.join(cell(v) for v in row[6:12]) +
              f' | {row[12]:.1e} | {row[13]} |')


def one_case(args):
    """One (method, impl) run in this process: model and clip loaded,
    peak RSS read, the method run once, peak RSS again."""
    score = args.case in SCORE or args.case == 'bare'
    model, module, inputs, x, target = load(args, score=score)
    loaded = rss_mb()
    seconds = 0.0
    if args.impl != 'none':
        call, _, cleanup = runners(args.case, args.impl, args, model,
                                   module, inputs, x, target)
        t0 = time.perf_counter()
        call()
        seconds = time.perf_counter() - t0
        cleanup()
    print(f'CASE {args.case} {args.impl} seconds {seconds:.2f} '
          f'rss_loaded_mb {loaded:.0f} rss_peak_mb {rss_mb():.0f}',
          flush=True)


def suite_memory(args):
    cases = [('gradcam', 'none')]
    cases += [(m, i) for m in GRAD if m in args.methods
              for i in ('mmxai', 'torchcam')]
    cases += [('scorecam', 'none'), ('bare', 'bare')]
    cases += [(m, i) for m in SCORE if m in args.methods
              for i in ('mmxai', 'torchcam')]
    common = ['--frames', str(args.frames), '--size', str(args.size),
              '--score-frames', str(args.score_frames), '--score-size',
              str(args.score_size), '--layer', args.layer, '--batch-size',
              str(args.batch_size), '--samples', str(args.samples)]
    if args.threads:
        common += ['--threads', str(args.threads)]
    rows = []
    for method, impl in cases:
        cmd = ['/usr/bin/time', '-v', sys.executable, osp.abspath(__file__),
               '--case', method, '--impl', impl] + common
        before = load_avg()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        text = proc.stdout + proc.stderr
        peak = re.search(r'Maximum resident set size \(kbytes\): (\d+)', text)
        case = re.search(r'CASE \S+ \S+ seconds ([\d.]+) rss_loaded_mb (\d+) '
                         r'rss_peak_mb (\d+)', text)
        if proc.returncode or not (peak and case):
            print(f'{method} {impl}: failed\n{text[-2000:]}', flush=True)
            continue
        rows.append((method, impl, int(peak.group(1)) / KB,
                     float(case.group(2)), float(case.group(1)),
                     f'{before} / {load_avg()}'))
        print(f'{method} {impl}: peak {rows[-1][2]:.0f} MB (loaded '
              f'{rows[-1][3]:.0f} MB), {rows[-1][4]:.2f} s, load '
              f'{rows[-1][5]}', flush=True)
    print(f'\nPeak RSS (/usr/bin/time -v), one fresh process per case; '
          f'gradient CAMs 1x3x{args.frames}x{args.size}x{args.size} at '
          f'{GRAD_LAYER}, Score-CAM family 1x3x{args.score_frames}x'
          f'{args.score_size}x{args.score_size} at {args.layer} (batch '
          f'{args.batch_size}, {args.samples} samples); "loaded": the peak '
          'before the method runs (model, clip, one forward); "none": '
          'nothing run')
    print('| method | impl | peak RSS MB | loaded MB | added MB | s (one '
          'run, cold) | load before / after |')
    print('|---|---|---:|---:|---:|---:|---|')
    for m, i, p, ld, s, la in rows:
        print(f'| `{m}` | {i} | {p:.0f} | {ld:.0f} | {max(p - ld, 0):.0f} | {s:.2f} '
              f'| {la} |')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--suite', choices=('grad', 'score', 'memory'))
    p.add_argument('--case', help='one method (or "bare") in this process')
    p.add_argument('--impl', choices=('mmxai', 'torchcam', 'bare', 'none'),
                   default='mmxai')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--frames', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--score-frames', type=int, default=8)
    p.add_argument('--score-size', type=int, default=32)
    p.add_argument('--layer', default='backbone.layer1',
                   help='Score-CAM family layer')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--samples', type=int, default=2,
                   help='SS-CAM / IS-CAM samples (both implementations)')
    p.add_argument('--methods', nargs='+', default=list(GRAD) + list(SCORE))
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: torch\'s own)')
    args = p.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.case:
        one_case(args)
    elif args.suite == 'grad':
        suite_grad(args)
    elif args.suite == 'score':
        suite_score(args)
    elif args.suite == 'memory':
        suite_memory(args)
    else:
        p.error('give --suite or --case')


if __name__ == '__main__':
    main()
