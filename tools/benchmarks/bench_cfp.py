"""Time the Class Feature Pyramid back-step (excluding the forward) on CPU.

    python tools/benchmarks/bench_cfp.py [--frames 16 --size 224 --repeats 3]
        [--reference]

Builds I3D-R50 and ir-CSN-R50/R152 from the toolbox's own configs with random
weights (pretrained fields cleared), explains one clip and reports the
forward + trace, back-step (graph: seeds, producer tracing, D back-steps) and
tube times from ``ClassFeaturePyramid.last_timing`` (wall and process CPU
time, best of ``--repeats``), with the load average (the machine may be
shared). ``--reference`` also times the per-kernel reference walker (the
implementation before the back-step was batched), alternating with the
batched one in the same run, and checks that both give identical graphs and
tubes.
"""
import argparse
import json
import os
import time

import torch

import mmxai  # noqa: F401  (compat shims)
from mmengine.config import Config
from mmaction.registry import MODELS
from mmaction.utils import register_all_modules

from mmxai.explainers.cfp import ClassFeaturePyramid
from mmxai.testing.cfp_reference import PerKernelWalker as _PerKernelWalker

CONFIGS = {
    'i3d_r50': 'i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_'
               'kinetics400-rgb.py',
    'ircsn_r50': 'csn/ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e_'
                 'kinetics400-rgb.py',
    'ircsn_r152': 'csn/ircsn_r152_32x2x1-180e_kinetics400-rgb.py',
}


def build(name: str):
    import mmaction
    path = os.path.join(os.path.dirname(mmaction.__file__), '.mim', 'configs',
                        'recognition', CONFIGS[name])
    cfg = Config.fromfile(path).model
    cfg.backbone.pretrained = None
    cfg.backbone.pop('init_cfg', None)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--models', nargs='+', default=list(CONFIGS))
    ap.add_argument('--frames', type=int, default=16)
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--theta', type=float, default=0.6)
    ap.add_argument('--depth', type=int, default=3)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--reference', action='store_true',
                    help='also time the per-kernel reference walker')
    args = ap.parse_args()
    register_all_modules(init_default_scope=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print('load average (1, 5, 15 min) at start:',
          [round(x, 2) for x in os.getloadavg()], flush=True)
    results = {}
    for name in args.models:
        model = build(name)
        x = torch.randn(1, 1, 3, args.frames, args.size, args.size)
        impls = {'batched': ClassFeaturePyramid(
            model, theta=args.theta, depth=args.depth)}
        if args.reference:
            ref = ClassFeaturePyramid(model, theta=args.theta,
                                      depth=args.depth)
            ref._walker_cls = _PerKernelWalker
            impls['reference'] = ref
        runs = {k: [] for k in impls}
        last = {}
        for _ in range(args.repeats):
            for key, cfp in impls.items():  # alternate: same load
                t0 = time.perf_counter()
                last[key] = cfp.attribute(x)
                total = time.perf_counter() - t0
                runs[key].append(dict(total_s=total, **cfp.last_timing))
        exp = last['batched']
        res = dict(graph_nodes=_count(exp.extras['cfp_graph'][0]['root']),
                   input=[args.frames, args.size, args.size],
                   theta=args.theta, depth=args.depth,
                   threads=torch.get_num_threads(),
                   load=[round(x, 2) for x in os.getloadavg()])
        for key, rs in runs.items():
            res[key] = {f: round(min(r[f] for r in rs) * 1000, 1)
                        for f in ('backstep_s', 'tubes_s', 'backstep_cpu_s',
                                  'tubes_cpu_s', 'total_s')}
            res[key] = {k[:-2] + '_ms': v for k, v in res[key].items()}
        if args.reference:
            res['identical'] = _identical(exp, last['reference'])
        results[name] = res
        print(name, json.dumps(res), flush=True)
        del model, impls, exp, last
    return results


def _identical(a, b) -> bool:
    """Same graphs (key order included) and bitwise-equal tubes."""
    ta, tb = a.extras['cfp_tubes'], b.extras['cfp_tubes']
    return (json.dumps(a.extras['cfp_graph']) ==
            json.dumps(b.extras['cfp_graph']) and list(ta) == list(tb) and
            all(torch.equal(ta[k], tb[k]) for k in ta))


def _count(node) -> int:
    return 1 + sum(_count(c) for c in node['children'])


if __name__ == '__main__':
    main()
