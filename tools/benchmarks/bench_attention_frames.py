#!/usr/bin/env python
"""Memory and time of the attention methods against the number of frames
(issue 18): TimeSformer-B (divided space-time) and VideoMAE ViT-B, the
toolbox's configs at 224 px with random weights, one view.

    python tools/benchmarks/bench_attention_frames.py \
        [--models TimeSformer VideoMAE-B] [--frames 8 16 32] \
        [--methods forward attention_rollout attention_relevance] \
        [--out work_dirs/bench_attention_frames/runs.jsonl]

Every case (model, method, frames) runs in a fresh interpreter and reports
the seconds of the call (the model's forward under ``no_grad`` for
``forward``; ``build_explainer(method, model).attribute(x)`` otherwise) and
the process's peak RSS (``ru_maxrss``: model, input and the method's
tensors). The rows are printed as a markdown table; JSON lines are appended
to ``--out``. ``--timeout`` stops a case that runs too long (reported as
not finished).
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

MODELS = {
    'TimeSformer': 'mmaction::recognition/timesformer/'
                   'timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb.py',
    'VideoMAE-B': 'mmaction::recognition/videomae/'
                  'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py',
}
METHODS = ('forward', 'attention_rollout', 'attention_relevance')


def tokens(model_name: str, frames: int) -> str:
    """The token set of one view at 224 px (patches of 16: 14 x 14)."""
    if model_name == 'TimeSformer':
        return f'1 + {frames} x 196 = {1 + frames * 196}'
    return f'{frames // 2} x 196 = {frames // 2 * 196}'  # tubelet 2


def run_case(model_name: str, method: str, frames: int) -> dict:
    import torch
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '1')))
    import mmxai  # noqa: F401
    from mmxai.apis import init_recognizer
    from mmxai.preflight import load_config
    cfg = load_config(MODELS[model_name])
    cfg.model.backbone.num_frames = frames
    model = init_recognizer(cfg, None)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 3, frames, 224, 224)
    start = time.perf_counter()
    if method == 'forward':
        with torch.no_grad():
            out = model(x, mode='tensor')
        shape = list(out.shape)
    else:
        from mmxai.explainers import build_explainer
        res = build_explainer(method, model).attribute(x)
        shape = list(res.maps.shape)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(model=model_name, method=method, frames=frames,
                tokens=tokens(model_name, frames), seconds=round(seconds, 1),
                peak_rss_gb=round(peak, 2), output=shape)


def load_average() -> str:
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--frames', nargs='+', type=int, default=[8, 16, 32])
    p.add_argument('--methods', nargs='+', default=list(METHODS),
                   choices=list(METHODS))
    p.add_argument('--out', default='work_dirs/bench_attention_frames/'
                   'runs.jsonl')
    p.add_argument('--timeout', type=float, default=1800)
    p.add_argument('--case', nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        name, method, frames = args.case
        print(json.dumps(run_case(name, method, int(frames))))
        return 0
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    rows = []
    for name in args.models:
        for frames in args.frames:
            for method in args.methods:
                load = load_average()
                try:
                    proc = subprocess.run(
                        [sys.executable, __file__, '--case', name, method,
                         str(frames)], capture_output=True, text=True,
                        timeout=args.timeout, cwd=ROOT)
                    lines = [ln for ln in proc.stdout.splitlines()
                             if ln.startswith('{')]
                    rec = json.loads(lines[-1]) if lines else dict(
                        model=name, method=method, frames=frames,
                        error=proc.stderr.strip().splitlines()[-1:])
                except subprocess.TimeoutExpired:
                    rec = dict(model=name, method=method, frames=frames,
                               error=f'not finished in {args.timeout:.0f} s')
                rec.update(load_average=load, load_average_end=load_average())
                rows.append(rec)
                with open(args.out, 'a') as f:
                    f.write(json.dumps(rec) + '\n')
                print(json.dumps(rec), flush=True)
    print('\n| model | frames | tokens | method | seconds | peak RSS | '
          'load (start -> end) |\n|---|---:|---|---|---:|---:|---|')
    for r in rows:
        if 'error' in r:
            print(f"| {r['model']} | {r['frames']} | | {r['method']} | "
                  f"{r['error']} | | {r['load_average']} |")
        else:
            print(f"| {r['model']} | {r['frames']} | {r['tokens']} | "
                  f"{r['method']} | {r['seconds']} | {r['peak_rss_gb']} GiB "
                  f"| {r['load_average']} -> {r['load_average_end']} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
