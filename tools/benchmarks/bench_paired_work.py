#!/usr/bin/env python
"""Paired cost of two issue 17 methods against the bare passes they need,
on the speed benchmark's I3D-R50 (random weights, 1x3x8x64x64): temporal
masks (10 Adam iterations, uniform init) against 10 forward+backward passes
to the input, LRP (epsilon) against one; 8 rounds, alternating order.

    python tools/benchmarks/bench_paired_work.py [--cases temporal_mask lrp] [--rounds 8]
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
ap.add_argument('--cases', nargs='+', default=['temporal_mask', 'lrp'])
ap.add_argument('--rounds', type=int, default=8)
args = ap.parse_args()
model, data = random_i3d_and_clip(8, 64)
d = model.data_preprocessor(data, False)
x = d['inputs']
def fwd_bwd():
    inp = x.detach().requires_grad_(True)
    feats, kw = model.extract_feat(inp, test_mode=True)
    s = model.cls_head(feats, **kw)
    torch.autograd.grad(s[0, 0], inp)
IT = 10
tm = build_explainer('temporal_mask', model, iterations=IT, init='uniform')
lrp = build_explainer('lrp', model)
cases = {'temporal_mask': ('temporal_mask (10 it) / 10 x fwd+bwd(input grad)', lambda: tm.attribute(x, 0), lambda: [fwd_bwd() for _ in range(IT)]),
         'lrp': ('lrp epsilon / fwd+bwd(input grad)', lambda: lrp.attribute(x, 0), fwd_bwd)}
for key in args.cases:
    name, a, b = cases[key]
    a(); b()
    r = []
    for i in range(args.rounds):
        order = (a, b) if i % 2 else (b, a)
        t = {}
        for fn in order:
            t0 = time.perf_counter(); fn(); t[fn] = time.perf_counter() - t0
        r.append(t[a] / t[b])
    r.sort()
    print(f'{name}: median {statistics.median(r):.2f} range {r[0]:.2f}-{r[-1]:.2f} ({args.rounds} paired rounds)', flush=True)
