#!/usr/bin/env python
"""Benchmark explain_long_video on generated long videos (docs/long_video.md).

    python tools/benchmarks/bench_long_video.py --minutes 10 60 \
        --methods bare gradcam saliency_tubes [--stride 10s] \
        [--model demo|tsm] [--device cuda] [--video-dir DIR] \
        [--outputs timeline video html maps]
    python tools/benchmarks/bench_long_video.py --minutes 1 --paired 4

Generates an 854x480, 25 fps video of each ``--minutes`` (FFmpeg's
testsrc2 pattern, MPEG-4; needs imageio-ffmpeg; kept in ``--video-dir``
when given, else in a temporary folder), then

* default: one fresh child process per (video, method), so each peak RSS
  is that run's own (``ru_maxrss``); ``bare`` is the batched sliding-window
  inference over the same windows (decode + pipeline + forward, no
  explanation, no files), any other name a method run through
  ``explain_long_video`` with ``--outputs``;
* ``--paired-overlay N``: one child per video that runs each method with
  ``--outputs`` (default all) twice a round, the overlay drawn during the
  sweep (``overlay_timeline='live'``) and as a second pass decoding the
  video again (``'full'``), N rounds after one warm-up round, the order
  alternating; prints the walls, the overlay's share of each and the ratio;
* ``--paired N``: one child per video that runs ``bare`` and the window
  sweep of each method (``explain_long_video`` with ``outputs=('maps',)``:
  decode, pipeline, explanation, records and maps chunks, no run-level
  files) on the same windows N rounds after one warm-up round, the order
  alternating each round, and prints each round's ratio method / bare with the median and range.

Prints one JSON line per run: wall time, windows/s, peak RSS, the stage
times (decode, pipeline, explain, write, overlay, overlay_decode,
overlay_encode, timeline) and the load average before and after.
"""
import argparse
import json
import os
import os.path as osp
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

TSM_CONFIG = ('mmaction::recognition/tsm/'
              'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py')


def make_video(path: str, minutes: float) -> str:
    if osp.isfile(path):
        return path
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-loglevel', 'error',
                    '-y', '-f', 'lavfi', '-i',
                    'testsrc2=size=854x480:rate=25', '-t',
                    str(minutes * 60), '-c:v', 'mpeg4', '-q:v', '6',
                    '-threads', '2', path + '.part.mp4'], check=True)
    os.replace(path + '.part.mp4', path)
    return path


def build_model(name: str, device: str):
    from mmxai.apis import init_recognizer
    if name == 'demo':
        return init_recognizer(osp.join(ROOT, 'configs/demo/'
                                        'i3d_tiny_synthetic.py'),
                               osp.join(ROOT, 'demo/i3d_tiny_synthetic.pth'),
                               device=device)
    return init_recognizer(TSM_CONFIG, None, device=device)  # random weights


def run_one(model, args, method, out, outputs, timings,
            overlay_timeline='live') -> int:
    from mmxai.apis import explain_long_video
    if method == 'bare':
        return bare_inference(model, args.video, args.batch_size, timings,
                              args.stride)
    tl = explain_long_video(model, args.video, method=method, out_dir=out,
                            batch_size=args.batch_size, progress=False,
                            timings=timings, stride=args.stride,
                            outputs=outputs, resume=False,
                            overlay_timeline=overlay_timeline)
    return len(tl)


def child(args) -> None:
    import mmxai  # noqa: F401
    model = build_model(args.model, args.device)
    load0 = os.getloadavg()
    if args.paired_overlay:
        return paired_overlay(model, args, load0)
    if args.paired:
        return paired(model, args, load0)
    timings = {}
    start = time.perf_counter()
    n = run_one(model, args, args.method, args.out, args.outputs, timings)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(
        model=args.model, method=args.method, device=args.device,
        minutes=args.minutes, stride=args.stride, batch_size=args.batch_size,
        outputs=args.outputs if args.method != 'bare' else [],
        windows=n, wall_s=round(wall, 1), windows_per_s=round(n / wall, 2),
        peak_rss_mib=round(rss),
        stages_s={k: round(v, 1) for k, v in timings.items()},
        load_before=[round(x, 2) for x in load0],
        load_after=[round(x, 2) for x in os.getloadavg()])), flush=True)


def paired(model, args, load0) -> None:
    """bare and each method's sweep on the same windows, alternating."""
    import numpy as np
    methods = [m for m in args.methods if m != 'bare']
    walls = {m: [] for m in ['bare'] + methods}
    for r in range(-1, args.paired):  # round -1: warm-up, not counted
        order = ['bare'] + methods
        if r % 2:
            order = order[::-1]
        for m in order:
            out = osp.join(args.out, f'{m}_{r}')
            t = time.perf_counter()
            n = run_one(model, args, m, out, ('maps',), {})
            if r >= 0:
                walls[m].append(time.perf_counter() - t)
            shutil.rmtree(out, ignore_errors=True)
    for m in methods:
        ratio = np.array(walls[m]) / np.array(walls['bare'])
        print(json.dumps(dict(
            paired=m, over='bare', model=args.model, minutes=args.minutes,
            stride=args.stride, batch_size=args.batch_size, windows=n,
            rounds=args.paired, bare_s=[round(x, 1) for x in walls['bare']],
            method_s=[round(x, 1) for x in walls[m]],
            ratios=[round(x, 3) for x in ratio],
            median=round(float(np.median(ratio)), 3),
            range=[round(float(ratio.min()), 3), round(float(ratio.max()), 3)],
            load_before=[round(x, 2) for x in load0],
            load_after=[round(x, 2) for x in os.getloadavg()])), flush=True)


def paired_overlay(model, args, load0) -> None:
    """Each method's run with the overlay drawn in the sweep ('live') and
    as a second pass ('full'), alternating, in one process."""
    import numpy as np
    for m in [m for m in args.methods if m != 'bare']:
        res = {'live': [], 'full': []}
        for r in range(-1, args.paired_overlay):  # -1: warm-up
            order = ['live', 'full'] if r % 2 == 0 else ['full', 'live']
            for mode in order:
                out = osp.join(args.out, f'{m}_{mode}_{r}')
                tim = {}
                t = time.perf_counter()
                n = run_one(model, args, m, out, args.outputs, tim, mode)
                wall = time.perf_counter() - t
                shutil.rmtree(out, ignore_errors=True)
                if r >= 0:
                    res[mode].append(dict(wall=wall, **tim))
        live = np.array([x['wall'] for x in res['live']])
        full = np.array([x['wall'] for x in res['full']])
        ratio = live / full

        def med(mode, key):
            return round(float(np.median([x.get(key, 0.0)
                                          for x in res[mode]])), 2)
        keys = ('decode', 'explain', 'overlay', 'overlay_decode',
                'overlay_encode', 'timeline')
        print(json.dumps(dict(
            paired_overlay=m, model=args.model, minutes=args.minutes,
            stride=args.stride, batch_size=args.batch_size, windows=n,
            outputs=args.outputs, rounds=args.paired_overlay,
            live_s=[round(x, 1) for x in live],
            full_s=[round(x, 1) for x in full],
            ratios=[round(x, 3) for x in ratio],
            median=round(float(np.median(ratio)), 3),
            range=[round(float(ratio.min()), 3), round(float(ratio.max()), 3)],
            overlay_share_live=[round(x['overlay'] / x['wall'], 3)
                                for x in res['live']],
            overlay_share_full=[round(x['overlay'] / x['wall'], 3)
                                for x in res['full']],
            median_stages_live={k: med('live', k) for k in keys},
            median_stages_full={k: med('full', k) for k in keys},
            load_before=[round(x, 2) for x in load0],
            load_after=[round(x, 2) for x in os.getloadavg()])), flush=True)


def bare_inference(model, video, batch_size, timings, stride=None) -> int:
    """The same windows through the model, forward only, decoded as the
    sweep decodes them (``_window_frames``)."""
    import torch
    from mmengine.dataset import pseudo_collate

    from mmxai.apis.long_video import (VideoStream, WindowInputs,
                                       _window_frames, plan_windows)
    from mmxai.apis.video_input import test_pipeline_cfg
    stream = VideoStream(video)
    plan = plan_windows(test_pipeline_cfg(model.cfg), stream.num_frames,
                        stream.fps, stride)
    inputs = WindowInputs(model.cfg, plan, stream.shape, video)
    timings.update(decode=0.0, pipeline=0.0, forward=0.0)
    for k in range(0, len(plan), batch_size):
        batch = list(range(k, min(k + batch_size, len(plan))))
        samples = []
        t = time.perf_counter()
        for i, frames, _ in _window_frames(stream, plan, batch):
            t1 = time.perf_counter()
            timings['decode'] += t1 - t
            samples.append(inputs.sample(frames, plan.frames(i)))
            del frames
            t = time.perf_counter()
            timings['pipeline'] += t - t1
        data = pseudo_collate(samples)
        with torch.no_grad():
            model.test_step(data)
        timings['forward'] += time.perf_counter() - t
    return len(plan)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--minutes', type=float, nargs='+', default=[10])
    p.add_argument('--methods', nargs='+',
                   default=['bare', 'gradcam', 'saliency_tubes'])
    p.add_argument('--model', default='demo', choices=['demo', 'tsm'])
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--stride', default=None,
                   help='window stride (default: the span)')
    p.add_argument('--outputs', nargs='+',
                   default=['timeline', 'video', 'html', 'maps'])
    p.add_argument('--paired', type=int, default=0, metavar='ROUNDS')
    p.add_argument('--paired-overlay', type=int, default=0,
                   metavar='ROUNDS')
    p.add_argument('--video-dir', help='keep (and reuse) the videos here')
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--video', help=argparse.SUPPRESS)
    p.add_argument('--method', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.minutes = args.minutes[0]
        return child(args)
    with tempfile.TemporaryDirectory(prefix='bench_long_') as tmp:
        vdir = args.video_dir or tmp
        os.makedirs(vdir, exist_ok=True)
        for minutes in args.minutes:
            video = make_video(osp.join(vdir, f'{minutes:g}min.mp4'), minutes)
            cases = ['paired'] if args.paired or args.paired_overlay \
                else args.methods
            for method in cases:
                out = osp.join(tmp, f'out_{minutes:g}_{method}')
                cmd = [sys.executable, osp.abspath(__file__), '--child',
                       '--video', video, '--method', method, '--out', out,
                       '--model', args.model, '--device', args.device,
                       '--batch-size', str(args.batch_size), '--minutes',
                       str(minutes), '--paired', str(args.paired),
                       '--paired-overlay', str(args.paired_overlay),
                       '--methods', *args.methods, '--outputs', *args.outputs]
                if args.stride:
                    cmd += ['--stride', args.stride]
                subprocess.run(cmd, check=True, env=dict(
                    os.environ, PYTHONWARNINGS='ignore'))
                shutil.rmtree(out, ignore_errors=True)


if __name__ == '__main__':
    main()
