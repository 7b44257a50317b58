"""Time the Class Feature Pyramid back-step (excluding the forward) on CPU.

    python tools/benchmarks/bench_cfp.py [--frames 16 --size 224 --repeats 3]

Builds I3D-R50 and ir-CSN-R50/R152 from the toolbox's own configs with random
weights (pretrained fields cleared), explains one clip and reports the
forward + trace, back-step (graph: seeds, producer tracing, D back-steps) and
tube times from ``ClassFeaturePyramid.last_timing``.
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
    args = ap.parse_args()
    register_all_modules(init_default_scope=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for name in args.models:
        model = build(name)
        x = torch.randn(1, 1, 3, args.frames, args.size, args.size)
        cfp = ClassFeaturePyramid(model, theta=args.theta, depth=args.depth)
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            exp = cfp.attribute(x)
            total = time.perf_counter() - t0
            runs.append(dict(total_s=total, **cfp.last_timing))
        nodes = _count(exp.extras['cfp_graph'][0]['root'])
        best = min(runs, key=lambda r: r['backstep_s'])
        results[name] = dict(
            backstep_ms=round(1000 * best['backstep_s'], 1),
            tubes_ms=round(1000 * best['tubes_s'], 1),
            total_s=round(min(r['total_s'] for r in runs), 3),
            graph_nodes=nodes, input=[args.frames, args.size, args.size],
            theta=args.theta, depth=args.depth,
            threads=torch.get_num_threads())
        print(name, json.dumps(results[name]), flush=True)
        del model, cfp, exp
    return results


def _count(node) -> int:
    return 1 + sum(_count(c) for c in node['children'])


if __name__ == '__main__':
    main()
