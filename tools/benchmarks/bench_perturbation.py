"""Cost of mmxai's perturbation explainers relative to plain forwards.

I3D-R50 (toolbox config, random weights), input 1x1x3x16x224x224, CPU:
each method's time / the time of the same number of plain batched forward
passes (forward+backward for STEP); mmxai 3D occlusion vs Captum
``Occlusion`` on the same 147 windows; peak RSS of 3D RISE with 500 and
4000 masks (each in its own process, on a tiny real ResNet3d at 16x224x224
so 4000 masks stay affordable: the masks, not the model, are what could
grow).

    .venv/bin/python tools/benchmarks/bench_perturbation.py [--quick]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch

CONFIG = ('recognition/i3d/'
          'i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py')


def build_i3d():
    import mmxai  # noqa: F401
    import mmaction
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules(init_default_scope=True)
    path = os.path.join(os.path.dirname(mmaction.__file__), '.mim',
                        'configs', CONFIG)
    cfg = Config.fromfile(path).model
    cfg.backbone.pretrained = None
    cfg.backbone.pretrained2d = False
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def per_forward(model, x, batch, reps, backward=False, retain=False):
    """Seconds per clip of plain batched forwards (+ input backward);
    ``retain``: inside :func:`mmxai.utils.heap.retained_heap`, as the
    perturbation explainers run."""
    from mmxai.explainers.gradient_utils import frozen_parameters
    from mmxai.utils.heap import retained_heap
    xb = x.expand(batch, *x.shape[1:]).contiguous()

    def run():
        for _ in range(reps):
            if backward:
                with frozen_parameters(model), torch.enable_grad():
                    xi = xb.clone().requires_grad_(True)
                    s = model.extract_feat(xi, test_mode=True)[0]
                    torch.autograd.grad(model.cls_head(s)[:, 0].sum(), xi)
            else:
                with torch.inference_mode():
                    model.cls_head(model.extract_feat(xb, test_mode=True)[0])
    with retained_heap(retain):
        run()  # warm-up
        sec, _ = timed(run)
    return sec / (reps * batch)


def memory_child(n_masks):
    """Peak memory of RISE with ``n_masks`` masks, in a fresh process: the
    rise of the peak RSS over the RSS after a warm-up run (peak reset via
    ``/proc/self/clear_refs``, see ``bench_speed.run_with_peak``)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..',
                                    'tests'))
    sys.path.insert(0, os.path.dirname(__file__))
    import tiny_models as tm
    from bench_speed import run_with_peak
    from mmxai.explainers import build_explainer
    model = tm.build(tm.i3d_cfg(num_classes=400, base_channels=2))
    # 16x112x112 keeps 4000 masks to a few minutes; the point is that the
    # peak does not grow with the number of masks.
    x = torch.randn(1, 1, 3, 16, 112, 112)

    def rise(n):
        return build_explainer(dict(type='rise', num_masks=n, batch_size=8,
                                    progress=False), model).attribute(x, 0)
    rise(8)  # warm-up: allocator pools, model buffers, first batch
    sec, growth = run_with_peak(lambda: rise(n_masks))
    print(json.dumps(dict(masks=n_masks, seconds=round(sec, 2),
                          peak_growth_mib=round(growth, 1))))


def _in_retained(fn):
    from mmxai.utils.heap import retained_heap
    with retained_heap():
        return fn()


def occlusion_vs_captum(repeats: int, quick: bool):
    """mmxai ``Occlusion3D`` vs Captum ``Occlusion``: same 147 windows,
    same batch, logits, baseline 0; runs interleaved, medians reported."""
    import statistics
    from captum.attr import Occlusion
    from mmxai.explainers import build_explainer
    model = build_i3d()
    size, frames = (112, 8) if quick else (224, 16)
    x = torch.randn(1, 1, 3, frames, size, size)
    win = (frames // 2, size // 7, size // 7)
    stride = (frames // 4, size // 7, size // 7)
    ours = build_explainer(dict(type='occlusion', window=win, stride=stride,
                                batch_size=8, baseline=0.0, score='logit',
                                progress=False), model)

    def forward(inp):
        with torch.inference_mode():
            return model.cls_head(model.extract_feat(inp,
                                                     test_mode=True)[0])
    occ = Occlusion(forward)
    cases = {
        'mmxai occlusion': lambda: ours.attribute(x, 0),
        'captum Occlusion': lambda: occ.attribute(
            x, sliding_window_shapes=(1, 3, *win), strides=(1, 3, *stride),
            target=0, baselines=0, perturbations_per_eval=8)}
    # not how Captum runs by default: shows how much of the difference is
    # the allocator policy that mmxai's perturbation explainers apply
    cases['captum Occlusion in retained_heap()'] = lambda: _in_retained(
        cases['captum Occlusion'])
    for fn in cases.values():  # warm-up
        fn()
    times = {k: [] for k in cases}
    faults = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            sec, _ = timed(fn)
            times[k].append(sec)
            faults[k].append(
                resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps(dict(input=list(x.shape), windows=147, repeats=repeats,
                          seconds=med, minor_page_faults={
                              k: int(statistics.median(v))
                              for k, v in faults.items()},
                          ratio_mmxai_over_captum=round(
                              med['mmxai occlusion'] /
                              med['captum Occlusion'], 3)), indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--skip-memory', action='store_true')
    ap.add_argument('--memory-child', type=int)
    ap.add_argument('--memory-runs', type=int, default=3,
                    help='fresh processes per mask count (median reported)')
    ap.add_argument('--occlusion-vs-captum', type=int, metavar='REPEATS',
                    help='only time mmxai occlusion against Captum Occlusion, '
                    'interleaved, on identical work (logits, baseline 0)')
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    if args.occlusion_vs_captum:
        return occlusion_vs_captum(args.occlusion_vs_captum, args.quick)
    from captum.attr import Occlusion
    from mmxai.explainers import build_explainer
    q = args.quick
    model = build_i3d()
    size, frames = (112, 8) if q else (224, 16)
    x = torch.randn(1, 1, 3, frames, size, size)
    bs = 4 if q else 8
    fwd = per_forward(model, x, bs, 1 if q else 2)
    # the same forwards with freed memory kept in the process, as the
    # explainers run them: the model's own compute, without page faults
    fwd_kept = per_forward(model, x, bs, 1 if q else 2, retain=True)
    fwd_bwd = per_forward(model, x, 2, 1, backward=True)
    rows = []
    win = (frames // 2, size // 7, size // 7)
    stride = (frames // 4, size // 7, size // 7)  # 3 x 7 x 7 = 147 windows
    cases = [
        ('rise', dict(type='rise', num_masks=16 if q else 64,
                      batch_size=bs), 16 if q else 64, fwd),
        ('occlusion', dict(type='occlusion', window=win, stride=stride,
                           batch_size=bs), 147, fwd),
        ('lime', dict(type='lime', num_samples=16 if q else 32,
                      segmentation='grid', batch_size=bs),
         16 if q else 32, fwd),
        ('kernel_shap', dict(type='kernel_shap', num_samples=16 if q else 32,
                             segmentation='grid', batch_size=bs),
         16 if q else 32, fwd),
        ('step', dict(type='step', max_iter=2 if q else 3,
                      areas=[0.05, 0.1, 0.15, 0.5]),
         4 * (2 if q else 3), fwd_bwd),
    ]
    maps = {}
    for name, cfg, n_eval, unit in cases:
        exp = build_explainer(dict(cfg, progress=False), model)
        sec, out = timed(lambda: exp.attribute(x, 0))
        maps[name] = out
        # occlusion also runs the clean clip once; others as counted
        row = dict(method=name, evaluations=n_eval, seconds=round(sec, 2),
                   ratio=round(sec / (n_eval * unit), 3))
        if unit is fwd:
            row['ratio_heap_retained_forwards'] = round(
                sec / (n_eval * fwd_kept), 3)
        rows.append(row)
        print(rows[-1], flush=True)

    def forward(inp):
        with torch.inference_mode():
            return model.cls_head(model.extract_feat(inp,
                                                     test_mode=True)[0])
    occ = Occlusion(forward)
    sec, ref = timed(lambda: occ.attribute(
        x, sliding_window_shapes=(1, 3, *win), strides=(1, 3, *stride),
        target=0, baselines=0, perturbations_per_eval=bs))
    rows.append(dict(method='captum Occlusion (logits)', evaluations=147,
                     seconds=round(sec, 2),
                     ratio=round(sec / (147 * fwd), 3),
                     ratio_heap_retained_forwards=round(
                         sec / (147 * fwd_kept), 3)))
    print(rows[-1], flush=True)
    mem = []
    if not args.skip_memory:
        for n in ((100, 800) if q else (500, 4000)):
            runs = []
            for _ in range(args.memory_runs):  # fresh process each
                out = subprocess.run(
                    [sys.executable, __file__, '--memory-child', str(n)],
                    capture_output=True, text=True, check=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            peaks = sorted(r['peak_growth_mib'] for r in runs)
            mem.append(dict(masks=n, peak_growth_mib_median=peaks[
                len(peaks) // 2], peak_growth_mib_runs=peaks,
                seconds=[r['seconds'] for r in runs]))
            print(mem[-1], flush=True)
        if len(mem) == 2:
            a, b = (m['peak_growth_mib_median'] for m in mem)
            print(f'RISE peak memory {mem[1]["masks"]} / {mem[0]["masks"]} '
                  f'masks: {b / a:.3f}', flush=True)
    print(json.dumps(dict(
        machine=f'{platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores, torch {torch.__version__}, '
        f'threads {torch.get_num_threads()}',
        input=list(x.shape), sec_per_forward=round(fwd, 4),
        sec_per_forward_heap_retained=round(fwd_kept, 4),
        sec_per_forward_backward=round(fwd_bwd, 4), rows=rows,
        memory=mem), indent=1))


if __name__ == '__main__':
    main()
