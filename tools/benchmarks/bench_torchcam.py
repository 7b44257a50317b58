#!/usr/bin/env python
"""mmxai's CAMs against torch-cam's on the same model, clip and layer:
time side by side (interleaved, paired ratios with their spread), and the
maps' agreement.

The toolbox's I3D-R50 config with random weights, a 1x3xTx224x224 clip,
target layer ``backbone.layer4`` (torch-cam hooks a plain module mapping
``[N, C, T, H, W]`` to the recognizer's pre-softmax scores; its names gain
``net.``). torch-cam times the forward with gradients, its map
(``normalized=False``) and nothing else; mmxai times ``attribute()``
(forward, the backward from the target layer up, the map upsampled to the
input and normalised).

    python tools/benchmarks/bench_torchcam.py [--repeats 5] [--frames 8]
        [--size 224] [--methods gradcam gradcam++ xgradcam layercam]
"""
import argparse
import os.path as osp
import platform
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from bench_model import random_i3d_and_clip  # noqa: E402

#: mmxai method -> (torch-cam class, mmxai options, torch-cam options)
PAIRS = {
    'gradcam': ('GradCAM', {}, {}),
    # torch-cam 0.5's GradCAMpp differs (alpha = g^2); compare the cost
    'gradcam++': ('GradCAMpp', {'denominator': 'sum_ag3'}, {}),
    'xgradcam': ('XGradCAM', {}, {}),
    'layercam': ('LayerCAM', {}, {}),
    'smooth_gradcam++': ('SmoothGradCAMpp', {'num_samples': 4},
                         {'num_samples': 4}),
}
LAYER = 'backbone.layer4'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--frames', type=int, default=8)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--methods', nargs='+', default=list(PAIRS))
    args = p.parse_args()

    import torch
    from torch import nn
    import torchcam.methods as tc
    from mmxai.adapters import build_adapter
    from mmxai.adapters.base import upsample_maps
    from mmxai.explainers import build_explainer

    model, data = random_i3d_and_clip(args.frames, args.size)
    inputs = model.data_preprocessor(data, False)['inputs']  # [1,1,C,T,H,W]

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

    rows = []
    for method in args.methods:
        theirs, ours_opts, their_opts = PAIRS[method]
        ours = build_explainer(method, model, target_layers=[LAYER],
                               **ours_opts)
        ext = getattr(tc, theirs)(module, 'net.' + LAYER,
                                  input_shape=tuple(x.shape[1:]),
                                  **their_opts)

        def run_ours():
            return ours.attribute(inputs, target)

        def run_theirs():
            scores = module(x)
            return ext([target], scores, normalized=False)[0]

        t_ours, t_theirs = [], []
        for r in range(args.repeats + 1):  # the first round warms up
            order = (run_ours, run_theirs) if r % 2 else (run_theirs,
                                                          run_ours)
            for fn in order:
                t0 = time.perf_counter()
                out = fn()
                dt = time.perf_counter() - t0
                if r:
                    (t_ours if fn is run_ours else t_theirs).append(dt)
                if fn is run_ours:
                    exp = out
                else:
                    ref = out.detach()
        ext.remove_hooks()
        ref_up = upsample_maps(ref.unsqueeze(1),
                               inputs.shape[-3:])[0, 0]
        mine = exp.layer_maps[LAYER][0, 0]
        assert float(ref_up.abs().max()) > 0, f'{method}: an all-zero map'
        err = float((mine - ref_up).abs().max() /
                    ref_up.abs().max().clamp_min(1e-12))
        ratios = sorted(a / b for a, b in zip(t_ours, t_theirs))
        rows.append((method, theirs, statistics.median(t_ours),
                     statistics.median(t_theirs), statistics.median(ratios),
                     ratios[0], ratios[-1], err))
        print(f'{method:18s} mmxai {rows[-1][2]:.2f} s  torch-cam '
              f'{rows[-1][3]:.2f} s  ratio {rows[-1][4]:.2f} '
              f'[{ratios[0]:.2f}, {ratios[-1]:.2f}]  max rel diff {err:.1e}',
              flush=True)

    print()
    print(f'I3D-R50 (random init), 1x3x{args.frames}x{args.size}x{args.size}'
          f', layer {LAYER}, {args.repeats} interleaved rounds, torch '
          f'{torch.__version__}, {platform.processor() or platform.machine()}'
          f', {torch.get_num_threads()} threads')
    print('| mmxai | torch-cam | mmxai s | torch-cam s | ratio (median) | '
          'ratio range | max rel. map diff |')
    print('|---|---|---|---|---|---|---|')
    for m, t, a, b, r, lo, hi, e in rows:
        print(f'| `{m}` | `{t}` | {a:.2f} | {b:.2f} | {r:.2f} | '
              f'{lo:.2f}-{hi:.2f} | {e:.1e} |')


if __name__ == '__main__':
    main()
