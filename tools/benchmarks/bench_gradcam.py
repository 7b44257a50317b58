#!/usr/bin/env python
"""Foundation benchmark: Grad-CAM / Saliency Tubes cost vs the model's own.

Measures side by side, interleaved in one run (the machine is noisy), on the
toolbox's I3D-R50 config with random weights and a 1x3x16x224x224 clip:

* a plain forward, and a plain forward + backward (all parameters);
* MMAction2's built-in ``mmaction.utils.GradCAM`` (map computation only:
  ``_calculate_localization_map``, without its alpha blending);
* mmxai ``GradCAM`` and ``SaliencyTubes`` (``explain`` on the same batch).

    python tools/benchmarks/bench_gradcam.py [--repeats 5] [--frames 16]
        [--size 224] [--out docs/speed_foundation.md]
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


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--frames', type=int, default=16)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--out', default=None, help='write a Markdown report')
    args = p.parse_args()

    import torch
    from mmaction.utils import GradCAM as BuiltinGradCAM
    from mmxai.explainers import GradCAM, SaliencyTubes
    if args.threads:
        torch.set_num_threads(args.threads)

    model, data = random_i3d_and_clip(args.frames, args.size)

    def plain_forward():
        with torch.no_grad():
            d = model.data_preprocessor(data, False)
            model(d['inputs'], d['data_samples'], mode='predict')

    def forward_backward():
        d = model.data_preprocessor(data, False)
        feats, kw = model.extract_feat(d['inputs'], test_mode=True)
        score = model.cls_head(feats, **kw)
        score.max(-1)[0].sum().backward()
        model.zero_grad(set_to_none=True)

    builtin = BuiltinGradCAM(model, 'backbone/layer4/1/relu')

    def builtin_gradcam():
        builtin._calculate_localization_map(data, use_labels=False)
        model.zero_grad(set_to_none=True)

    gradcam = GradCAM(model, target_layers=['backbone.layer4'])
    tubes = SaliencyTubes(model)

    def mmxai_gradcam():
        gradcam.explain(data)

    def mmxai_tubes():
        tubes.explain(data)

    cases = [('plain forward', plain_forward),
             ('plain forward+backward', forward_backward),
             ('MMAction2 built-in GradCAM', builtin_gradcam),
             ('mmxai GradCAM', mmxai_gradcam),
             ('mmxai SaliencyTubes', mmxai_tubes)]
    for _, fn in cases:  # warm-up
        fn()
    times = {name: [] for name, _ in cases}
    for r in range(args.repeats):
        for name, fn in cases:  # interleaved: drift hits every case alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    fwd, fb = med['plain forward'], med['plain forward+backward']
    rows = [(k, med[k], med[k] / fwd, med[k] / fb) for k in med]
    ratios = {
        'mmxai GradCAM / plain forward+backward':
        med['mmxai GradCAM'] / fb,
        'mmxai GradCAM / built-in GradCAM':
        med['mmxai GradCAM'] / med['MMAction2 built-in GradCAM'],
        'mmxai SaliencyTubes / plain forward':
        med['mmxai SaliencyTubes'] / fwd,
        'built-in GradCAM / plain forward+backward':
        med['MMAction2 built-in GradCAM'] / fb,
    }
    machine = (f'{platform.processor() or platform.machine()}, '
               f'{torch.get_num_threads()} threads, torch {torch.__version__}')
    lines = [f'I3D-R50 (toolbox config, random weights), input 1x3x'
             f'{args.frames}x{args.size}x{args.size}, CPU ({machine}); '
             f'median of {args.repeats} interleaved repeats', '',
             '| case | seconds | / forward | / forward+backward |',
             '|---|---:|---:|---:|']
    lines += [f'| {k} | {s:.3f} | {a:.2f}x | {b:.2f}x |'
              for k, s, a, b in rows]
    lines += ['', '| ratio | value | goal |', '|---|---:|---|']
    goals = {'mmxai GradCAM / plain forward+backward': '<= 1.10',
             'mmxai GradCAM / built-in GradCAM': '<= 1.00',
             'mmxai SaliencyTubes / plain forward': '<= 1.10',
             'built-in GradCAM / plain forward+backward': '(reference)'}
    lines += [f'| {k} | {v:.2f} | {goals[k]} |' for k, v in ratios.items()]
    report = '\n'.join(lines)
    print(report)
    if args.out:
        cmd = 'python tools/benchmarks/bench_gradcam.py ' + ' '.join(
            sys.argv[1:])
        with open(args.out, 'w') as f:
            f.write('# Foundation speed: Grad-CAM and Saliency Tubes\n\n'
                    f'Command: `{cmd}`\n\n{report}\n')


if __name__ == '__main__':
    main()
