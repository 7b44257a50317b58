#!/usr/bin/env python
"""Benchmark explain_long_video on generated long videos (docs/long_video.md).

    python tools/benchmarks/bench_long_video.py --minutes 10 \
        --methods gradcam saliency_tubes [--device cuda] [--model demo|tsm]

Generates an 854x480, 25 fps video of ``--minutes`` minutes (FFmpeg's
testsrc2 pattern, MPEG-4; needs imageio-ffmpeg; not kept), then in one
child process per run (so peak RSS is the run's own) explains it with each
method, and runs the bare batched sliding-window inference over the same
windows (decode + pipeline + forward, no explanation, no files). Prints
one JSON line per run: wall time, windows/s, peak RSS, the stage times
(decode, pipeline, explain, write, overlay, timeline).
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

TSM_CONFIG = ('mmaction::recognition/tsm/'
              'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py')


def make_video(path: str, minutes: float) -> str:
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-loglevel', 'error',
                    '-y', '-f', 'lavfi', '-i',
                    'testsrc2=size=854x480:rate=25', '-t',
                    str(minutes * 60), '-c:v', 'mpeg4', '-q:v', '6',
                    '-threads', '2', path], check=True)
    return path


def build_model(name: str, device: str):
    from mmxai.apis import init_recognizer
    if name == 'demo':
        return init_recognizer(osp.join(ROOT, 'configs/demo/'
                                        'i3d_tiny_synthetic.py'),
                               osp.join(ROOT, 'demo/i3d_tiny_synthetic.pth'),
                               device=device)
    return init_recognizer(TSM_CONFIG, None, device=device)  # random weights


def child(args) -> None:
    import mmxai  # noqa: F401
    from mmxai.apis import explain_long_video
    model = build_model(args.model, args.device)
    start = time.perf_counter()
    timings = {}
    if args.method == 'bare':
        n = bare_inference(model, args.video, args.batch_size, timings)
    else:
        tl = explain_long_video(model, args.video, method=args.method,
                                out_dir=args.out, batch_size=args.batch_size,
                                progress=False, timings=timings)
        n = len(tl)
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(dict(
        model=args.model, method=args.method, device=args.device,
        minutes=args.minutes, windows=n, wall_s=round(wall, 1),
        windows_per_s=round(n / wall, 2), peak_rss_mib=round(rss),
        ffmpeg_peak_rss_mib=round(kids),
        stages_s={k: round(v, 1) for k, v in timings.items()})), flush=True)


def bare_inference(model, video, batch_size, timings) -> int:
    """The same windows through the model, forward only."""
    import torch
    from mmengine.dataset import pseudo_collate

    from mmxai.apis.long_video import (VideoStream, WindowInputs,
                                       _decode_batch, plan_windows)
    from mmxai.apis.video_input import test_pipeline_cfg
    stream = VideoStream(video)
    plan = plan_windows(test_pipeline_cfg(model.cfg), stream.num_frames,
                        stream.fps)
    inputs = WindowInputs(model.cfg, plan, stream.shape, video)
    timings.update(decode=0.0, forward=0.0)
    for k in range(0, len(plan), batch_size):
        batch = list(range(k, min(k + batch_size, len(plan))))
        t = time.perf_counter()
        frames, _ = _decode_batch(stream, plan, batch)
        timings['decode'] += time.perf_counter() - t
        t = time.perf_counter()
        data = pseudo_collate([inputs.sample(frames, plan.frames(i))
                               for i in batch])
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
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--video', help=argparse.SUPPRESS)
    p.add_argument('--method', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.minutes = args.minutes[0]
        return child(args)
    with tempfile.TemporaryDirectory(prefix='bench_long_') as tmp:
        for minutes in args.minutes:
            video = make_video(osp.join(tmp, f'{minutes:g}min.mp4'), minutes)
            for method in args.methods:
                out = osp.join(tmp, f'out_{minutes:g}_{method}')
                subprocess.run([sys.executable, osp.abspath(__file__),
                                '--child', '--video', video, '--method',
                                method, '--out', out, '--model', args.model,
                                '--device', args.device, '--batch-size',
                                str(args.batch_size), '--minutes',
                                str(minutes)], check=True,
                               env=dict(os.environ, PYTHONWARNINGS='ignore'))


if __name__ == '__main__':
    main()
