#!/usr/bin/env python
"""Paired cost of two issue 17 methods against the bare passes they need,
on the speed benchmark's I3D-R50 (random weights, 1x3x8x64x64): temporal
masks (10 Adam iterations, uniform init) against the work they need (one
clean forward, 10 forward+backward passes to the input with the weights
frozen, one final forward: `temporal_mask_work`; `temporal_mask` pairs the
10 passes alone), LRP (epsilon) against one forward+backward to the input
(`lrp_frozen`: with the weights frozen, as LRP runs); alternating order.

    python tools/benchmarks/bench_paired_work.py [--cases temporal_mask temporal_mask_work lrp lrp_frozen]
        [--rounds 8] [--threads 1]

Prints the wall-clock and the CPU-time ratio per case (median and range
over rounds); with --threads 1 CPU time is the process's own work, robust
to other jobs on shared cores.
"""
import sys, time, statistics
import os.path as osp
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
import argparse
import torch
from bench_model import random_i3d_and_clip
from mmxai.explainers import build_explainer
import os; os.environ['MMXAI_NO_PROGRESS'] = '1'
ap = argparse.ArgumentParser()
ap.add_argument('--cases', nargs='+', default=['temporal_mask_work', 'lrp', 'loco', 'univariate', 'frame_shapley', 'aosa', 'swag_v'])
ap.add_argument('--rounds', type=int, default=8)
ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default); 1 makes the CPU-time ratio robust to other jobs')
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
model, data = random_i3d_and_clip(8, 64)
d = model.data_preprocessor(data, False)
x = d['inputs']
def fwd_bwd():
    inp = x.detach().requires_grad_(True)
    feats, kw = model.extract_feat(inp, test_mode=True)
    s = model.cls_head(feats, **kw)
    torch.autograd.grad(s[0, 0], inp)
def frozen(fn):
    from mmxai.explainers.gradient_utils import frozen_parameters
    with frozen_parameters(model):
        fn()
def fwd():  # one gradient-free forward (a score)
    with torch.no_grad():
        feats, kw = model.extract_feat(x, test_mode=True)
        model.cls_head(feats, **kw)
def tm_work():  # what temporal_mask inherently needs, the authors' count:
    # the clean forward (target, original score), IT fwd+bwd to the input
    # (parameters frozen, as the explainer runs), one forward of the final mask
    from mmxai.explainers.gradient_utils import frozen_parameters
    with frozen_parameters(model):
        fwd(); [fwd_bwd() for _ in range(IT)]; fwd()
IT = 10
tm = build_explainer('temporal_mask', model, iterations=IT, init='uniform')
lrp = build_explainer('lrp', model)
cases = {'temporal_mask': ('temporal_mask (10 it) / 10 x fwd+bwd(input grad)', lambda: tm.attribute(x, 0), lambda: [fwd_bwd() for _ in range(IT)]),
         'temporal_mask_work': ('temporal_mask (10 it) / clean fwd + 10 x fwd+bwd(input grad, frozen) + 1 final fwd', lambda: tm.attribute(x, 0), tm_work),
         'lrp': ('lrp epsilon / fwd+bwd(input grad)', lambda: lrp.attribute(x, 0), fwd_bwd),
         # the bare pass without weight gradients (parameters frozen, as LRP runs)
         'lrp_frozen': ('lrp epsilon / fwd+bwd(input grad only, parameters frozen)', lambda: lrp.attribute(x, 0), lambda: frozen(fwd_bwd))}


def recorded_passes(fn):
    """The backbone passes ``fn`` makes: (input shape, with autograd)."""
    calls = []
    def hook(_m, inp, out):
        calls.append((tuple(inp[0].shape), bool(out.requires_grad)))
    h = model.backbone.register_forward_hook(hook)
    try:
        fn()
    finally:
        h.remove()
    return calls


def replay(calls):
    """The same passes, bare: backbone + head on ready-made inputs, a
    backward to the input where the method's pass had autograd."""
    made = {shape: torch.randn(shape) for shape, _ in calls}
    def run():
        with frozen_parameters(model):
            for shape, grad in calls:
                if grad:
                    inp = made[shape].requires_grad_(True)
                    s = model.cls_head(model.backbone(inp))
                    torch.autograd.grad(s[:, 0].sum(), inp)
                    inp.requires_grad_(False)
                else:
                    with torch.no_grad():
                        model.cls_head(model.backbone(made[shape]))
    return run


from mmxai.explainers.gradient_utils import frozen_parameters
#: the other issue 17 methods at the coverage walk's cheap settings, paired
#: against a replay of the backbone passes they make (same batch shapes)
OTHERS = {
    'loco': dict(segmentation='grid', grid=(2, 4, 4), batch_size=8),
    'univariate': dict(segmentation='grid', grid=(2, 4, 4), batch_size=8),
    'frame_shapley': dict(segments=4, batch_size=8),
    'aosa': dict(mode='approx', window=(2, 16, 16), stride=(2, 16, 16), batch_size=8),
    'swag_v': dict(segmentation='grid', batch_size=8),
}
for key in args.cases:
    if key in OTHERS:
        ex = build_explainer(key, model, **OTHERS[key])
        a = lambda ex=ex: ex.attribute(x, 0)
        calls = recorded_passes(a)
        nfwd = sum(sh[0] for sh, g in calls if not g)
        nbwd = sum(sh[0] for sh, g in calls if g)
        cases[key] = (f'{key} {OTHERS[key]} / its {len(calls)} backbone passes replayed bare '
                      f'({nfwd} clips forward, {nbwd} forward+backward)', a, replay(calls))
for key in args.cases:
    name, a, b = cases[key]
    a(); b()
    r, c = [], []
    for i in range(args.rounds):
        order = (a, b) if i % 2 else (b, a)
        t, u = {}, {}
        for fn in order:
            t0, u0 = time.perf_counter(), time.process_time()
            fn()
            t[fn], u[fn] = time.perf_counter() - t0, time.process_time() - u0
        r.append(t[a] / t[b])
        c.append(u[a] / u[b])
    r.sort(); c.sort()
    print(f'{name}: wall median {statistics.median(r):.2f} range {r[0]:.2f}-{r[-1]:.2f}, '
          f'CPU time median {statistics.median(c):.2f} range {c[0]:.2f}-{c[-1]:.2f} '
          f'({args.rounds} paired rounds, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f})', flush=True)
