#!/usr/bin/env python
"""Peak memory and time at real scale: a toolbox config's default multi-view
test pipeline on a generated 10 s 640x360 video, random weights.

Each case runs in a fresh interpreter (``--case``) and reports its own peak
RSS (``ru_maxrss``) and wall time, so peaks do not leak between cases:

    python tools/benchmarks/bench_scale.py --config mmaction::recognition/i3d/\
i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py

``--num-clips N`` sets the test pipeline's ``SampleFrames(num_clips=N)`` (the
1x3 / 10x3 / 20x3 views of the memory-flatness check); ``--max-memory 4G``
passes a budget to the explainers; ``--cases`` picks cases by name.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

CASES = {
    'toolbox inference': dict(kind='inference'),
    'gradcam (one pass)': dict(kind='explain', method='gradcam',
                               max_views_per_pass=0),
    'gradcam (8 views per pass)': dict(kind='explain', method='gradcam',
                                       max_views_per_pass=8),
    'saliency_tubes (8 views per pass)': dict(
        kind='explain', method='saliency_tubes', max_views_per_pass=8),
    'saliency (8 views per pass)': dict(
        kind='explain', method='saliency', max_views_per_pass=8),
    'integrated_gradients (16 steps)': dict(
        kind='explain', method='integrated_gradients', max_views_per_pass=8,
        options=dict(n_steps=16)),
    'rise (256 masks)': dict(kind='explain', method='rise',
                             max_views_per_pass=8,
                             options=dict(num_masks=256)),
}


def load_config(config: str, num_clips=None):
    """The config, with ``SampleFrames(num_clips=...)`` of its test
    pipelines set when ``num_clips`` is given."""
    from mmxai.preflight import load_config as load
    cfg = load(config)
    if num_clips:
        pipes = [cfg.get('test_pipeline')]
        loader = cfg.get('test_dataloader') or {}
        pipes.append((loader.get('dataset') or {}).get('pipeline'))
        for pipe in pipes:
            for step in pipe or []:
                if step.get('type') == 'SampleFrames':
                    step['num_clips'] = int(num_clips)
    return cfg


def make_video(path: str, seconds: int = 10, fps: int = 25,
               size=(640, 360)) -> str:
    import cv2
    import numpy as np
    if osp.isfile(path):
        return path
    rng = np.random.default_rng(0)
    w, h = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                             (w, h))
    base = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    for t in range(seconds * fps):
        img = base.copy()
        x = (t * 4) % (w - 80)
        img[140:220, x:x + 80] = (230, 200, 40)
        writer.write(img)
    writer.release()
    return path


def run_case(config: str, video: str, case: dict, num_clips=None,
             max_memory=None) -> dict:
    import torch
    torch.set_num_threads(int(os.environ.get('BENCH_THREADS', '2')))
    import mmxai  # noqa: F401
    from mmxai.apis import explain_video, init_recognizer
    model = init_recognizer(load_config(config, num_clips), None)
    start = time.perf_counter()
    if case['kind'] == 'inference':
        from mmaction.apis import inference_recognizer
        with torch.no_grad():
            inference_recognizer(model, video)
        views = None
    else:
        opts = dict(case.get('options', {}))
        if max_memory:
            opts['max_memory'] = max_memory
        res = explain_video(model, video, method=case['method'],
                            max_views_per_pass=case['max_views_per_pass'],
                            **opts)
        views = int(res.explanation.maps.shape[1])
    return dict(seconds=round(time.perf_counter() - start, 1),
                peak_rss_gb=round(resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                views=views)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', required=True)
    p.add_argument('--video', default='work_dirs/bench_scale/video_640x360.mp4')
    p.add_argument('--cases', nargs='+', default=list(CASES))
    p.add_argument('--case', default=None, help=argparse.SUPPRESS)
    p.add_argument('--out', default=None, help='append a JSON line here')
    p.add_argument('--num-clips', type=int, default=None,
                   help="the test pipeline's SampleFrames num_clips")
    p.add_argument('--max-memory', default=None,
                   help='memory budget for the explainers, e.g. 4G')
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args.config, args.video, CASES[args.case],
                                  args.num_clips, args.max_memory)))
        return 0
    os.makedirs(osp.dirname(args.video), exist_ok=True)
    make_video(args.video)
    rows = {}
    for name in args.cases:
        extra = [] if not args.num_clips else [
            '--num-clips', str(args.num_clips)]
        if args.max_memory:
            extra += ['--max-memory', args.max_memory]
        proc = subprocess.run([sys.executable, __file__, '--config',
                               args.config, '--video', args.video, '--case',
                               name] + extra, capture_output=True, text=True)
        last = proc.stdout.strip().splitlines()[-1:] or ['']
        try:
            rows[name] = json.loads(last[0])
        except ValueError:
            if proc.returncode < 0:
                err = (f'killed by signal {-proc.returncode} (out of memory '
                       'on this machine?)')
            else:
                lines = [ln for ln in proc.stderr.strip().splitlines()
                         if 'warn' not in ln.lower()]
                err = (lines or ['?'])[-1]
            rows[name] = dict(error=err[:200], returncode=proc.returncode)
        print(f'{name:36s} {rows[name]}', flush=True)
    if args.out:
        with open(args.out, 'a') as f:
            f.write(json.dumps(dict(config=args.config,
                                    num_clips=args.num_clips,
                                    max_memory=args.max_memory,
                                    rows=rows)) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
