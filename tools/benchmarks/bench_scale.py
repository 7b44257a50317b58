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

The issue-13 table, every model of :data:`MODELS` with the table's cases
(:data:`TABLE_CASES`), one fresh interpreter per case, JSON lines appended to
``--out`` and the markdown table written to ``--markdown``:

    python tools/benchmarks/bench_scale.py --models all \
        --out work_dirs/bench_scale/table.jsonl \
        --markdown work_dirs/bench_scale/table.md
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
    # the default plan: DEFAULT_VIEWS_PER_PASS and the default budget
    'gradcam': dict(kind='explain', method='gradcam'),
    'saliency_tubes': dict(kind='explain', method='saliency_tubes'),
    'integrated_gradients (16 steps, default plan)': dict(
        kind='explain', method='integrated_gradients',
        options=dict(n_steps=16)),
    # gradient checkpointing of the backbone's blocks on / off (the default
    # 'auto' turns it on under --max-memory toolbox)
    'integrated_gradients (16 steps, checkpointed)': dict(
        kind='explain', method='integrated_gradients',
        options=dict(n_steps=16, grad_checkpoint=True)),
    'integrated_gradients (16 steps, not checkpointed)': dict(
        kind='explain', method='integrated_gradients',
        options=dict(n_steps=16, grad_checkpoint=False)),
    'rise (256 masks, default plan)': dict(
        kind='explain', method='rise', options=dict(num_masks=256)),
    # the same peak in a fraction of the time: RISE's batch buffers do not
    # depend on the number of masks (its cell grids: 196 bytes per mask),
    # IG's steps per pass are the plan's batch (the same for 4 and 16 steps
    # whenever the budget allows at most 4: the plan column shows it)
    'rise (16 masks, default plan)': dict(
        kind='explain', method='rise', options=dict(num_masks=16)),
    'integrated_gradients (4 steps, default plan)': dict(
        kind='explain', method='integrated_gradients',
        options=dict(n_steps=4)),
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


#: The issue's nine models: MMAction2 configs, default test pipelines.
MODELS = {
    'I3D-R50': 'mmaction::recognition/i3d/'
               'i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py',
    'TSN-R50': 'mmaction::recognition/tsn/'
               'tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py',
    'TSM-R50': 'mmaction::recognition/tsm/'
               'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py',
    'SlowFast-R50': 'mmaction::recognition/slowfast/'
                    'slowfast_r50_8xb8-8x8x1-256e_kinetics400-rgb.py',
    'X3D-S': 'mmaction::recognition/x3d/'
             'x3d_s_13x6x1_facebook-kinetics400-rgb.py',
    'Video Swin-T': 'mmaction::recognition/swin/swin-tiny-p244-w877_in1k-pre_'
                    '8xb8-amp-32x2x1-30e_kinetics400-rgb.py',
    'TimeSformer': 'mmaction::recognition/timesformer/'
                   'timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb.py',
    'VideoMAE-B': 'mmaction::recognition/videomae/'
                  'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py',
    'UniFormerV2-B': 'mmaction::recognition/uniformerv2/'
                     'uniformerv2-base-p16-res224_clip_8xb32-u8_'
                     'kinetics400-rgb.py',
}

#: The cases of the nine-model table (default memory plan).
TABLE_CASES = ('toolbox inference', 'gradcam', 'saliency_tubes')


def load_average() -> str:
    """``/proc/loadavg``'s 1, 5 and 15 minute averages."""
    try:
        with open('/proc/loadavg') as f:
            return ' '.join(f.read().split()[:3])
    except OSError:
        return '?'


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
    cfg = load_config(config, num_clips)
    model = init_recognizer(cfg, None)
    load = load_average()
    start = time.perf_counter()
    plan = None
    if case['kind'] == 'inference':
        from mmaction.apis import inference_recognizer
        with torch.no_grad():
            inference_recognizer(model, video)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        views = count_views(model, cfg, video)  # after the peak is read
    else:
        opts = dict(case.get('options', {}))
        if max_memory:
            opts['max_memory'] = max_memory
        if 'max_views_per_pass' in case:
            opts['max_views_per_pass'] = case['max_views_per_pass']
        res = explain_video(model, video, method=case['method'], **opts)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        views = int(res.explanation.maps.shape[1])
        plan = getattr(res.explainer, 'last_memory_plan', None)
    return dict(seconds=round(seconds, 1), peak_rss_gb=round(peak / 2**20, 2),
                views=views, load_average=load,
                load_average_end=load_average(), memory_plan=plan)


def count_views(model, cfg, video: str) -> int:
    """Views (clips x crops) of ``cfg``'s test pipeline on ``video``."""
    from mmxai.adapters import build_adapter
    from mmxai.apis.video_input import load_video_sample
    sample = load_video_sample(video, cfg)
    raw = sample.data['inputs'][0].unsqueeze(0)
    return int(build_adapter(model).to_video(raw).shape[1])


class _Finished:
    """What :func:`run_sampled` saw of a case's process."""

    def __init__(self, returncode, stdout, stderr, timed_out, vmhwm_gb):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.timed_out, self.vmhwm_gb = timed_out, vmhwm_gb


def vmhwm_gb(pid: int):
    """``VmHWM`` (the peak resident set so far) of a live process, GiB."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        return None
    return None


def run_sampled(cmd, timeout=None, every: float = 5.0) -> _Finished:
    """Run ``cmd``, sampling its ``VmHWM`` every ``every`` seconds, so that
    a case stopped at ``timeout`` still reports the peak it had reached."""
    import tempfile
    with tempfile.TemporaryFile('w+') as out, \
            tempfile.TemporaryFile('w+') as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        start, peak, timed_out = time.monotonic(), None, False
        while proc.poll() is None:
            peak = vmhwm_gb(proc.pid) or peak
            if timeout and time.monotonic() - start > timeout:
                proc.kill()
                timed_out = True
                break
            time.sleep(every)
        proc.wait()
        out.seek(0)
        err.seek(0)
        return _Finished(proc.returncode, out.read(), err.read(), timed_out,
                         peak)


def run_cases(config: str, video: str, names, num_clips=None,
              max_memory=None, timeout=None, label=None) -> dict:
    """Each case of ``names`` in a fresh interpreter: name -> its result
    (or ``error``)."""
    rows = {}
    for name in names:
        extra = [] if not num_clips else ['--num-clips', str(num_clips)]
        if max_memory:
            extra += ['--max-memory', max_memory]
        proc = run_sampled(
            [sys.executable, __file__, '--config', config, '--video',
             video, '--case', name] + extra, timeout)
        if proc.timed_out:
            rows[name] = dict(error=f'not finished in {timeout} s',
                              returncode=None, vmhwm_gb=proc.vmhwm_gb,
                              last_progress=last_progress(proc.stderr))
            print(f'{label or ""} {name:36s} {rows[name]}', flush=True)
            continue
        last = proc.stdout.strip().splitlines()[-1:] or ['']
        try:
            rows[name] = json.loads(last[0])
        except ValueError:
            if proc.returncode == -9:
                err = 'killed by signal 9 (out of memory on this machine?)'
            elif proc.returncode < 0:
                err = f'killed by signal {-proc.returncode}'
            else:
                lines = [ln for ln in proc.stderr.strip().splitlines()
                         if 'warn' not in ln.lower()]
                err = (lines or ['?'])[-1]
            rows[name] = dict(error=err[:300], returncode=proc.returncode)
        print(f'{label or ""} {name:36s} {rows[name]}', flush=True)
    return rows


def last_progress(stderr) -> str:
    """The last progress-bar line of a stopped case's stderr (the bars
    rewrite their line with carriage returns)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors='replace')
    lines = [ln.strip() for ln in (stderr or '').replace('\r', '\n').split(
        '\n') if '/' in ln and 'elapsed' in ln]
    return lines[-1][-160:] if lines else ''


def plan_text(plan) -> str:
    """``views per pass / batch (budget)`` of a memory plan."""
    if not plan:
        return '-'
    text = str(plan.get('views_per_pass', '-'))
    if plan.get('batch_size') is not None:
        text += f" / {plan['batch_size']}"
    if plan.get('budget'):
        text += f" ({plan['budget'] / 2**30:.2f} GB)"
    if plan.get('grad_checkpoint'):
        text += ', checkpointed'
    return text


def markdown_table(records) -> str:
    """One row per (model, views, case): peak, time, time per view and the
    ratio to the toolbox's peak of the same model and views."""
    out = ['| model | views | case | peak RSS | time | time per view | '
           'vs toolbox peak | views per pass / batch (budget) | '
           'load average (start -> end) |',
           '|---|---|---|---|---|---|---|---|---|']
    for rec in records:
        rows = rec['rows']
        base = rows.get('toolbox inference', {}).get('peak_rss_gb')
        views = next((r['views'] for r in rows.values()
                      if r.get('views')), None)
        for name, r in rows.items():
            if 'error' in r and r.get('vmhwm_gb'):  # stopped at --timeout
                ratio = f">= {r['vmhwm_gb'] / base:.2f}x" if base else '-'
                out.append(f"| {rec['model']} | {views or '?'} | {name} | "
                           f">= {r['vmhwm_gb']:.2f} GiB (`VmHWM` when "
                           f"stopped: {r['error']}; "
                           f"{r.get('last_progress') or 'no progress line'})"
                           f" | | | {ratio} | | |")
                continue
            if 'error' in r:
                out.append(f"| {rec['model']} | {views or '?'} | {name} | "
                           f"failed: `{r['error']}` | | | | | |")
                continue
            ratio = f"{r['peak_rss_gb'] / base:.2f}x" if base else '-'
            per = f"{r['seconds'] / views:.2f} s" if views else '-'
            plan = plan_text(r.get('memory_plan'))
            out.append(f"| {rec['model']} | {views or '?'} | {name} | "
                       f"{r['peak_rss_gb']:.2f} GB | {r['seconds']:.1f} s | "
                       f"{per} | {ratio} | {plan} | "
                       f"{r.get('load_average', '?')} -> "
                       f"{r.get('load_average_end', '?')} |")
    return '\n'.join(out) + '\n'


def merge_records(paths) -> list:
    """Records of JSON-lines files merged by (model, num_clips): later
    runs of a case replace earlier ones, cases keep their first order."""
    merged = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                key = (rec.get('model') or rec.get('config'),
                       rec.get('num_clips'))
                if key not in merged:
                    merged[key] = dict(rec, model=key[0], rows={})
                merged[key]['rows'].update(rec['rows'])
    for rec in merged.values():  # the toolbox's row first
        rows = rec['rows']
        rec['rows'] = dict(sorted(rows.items(),
                                  key=lambda kv: kv[0] != 'toolbox inference'))
    return list(merged.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=None)
    p.add_argument('--models', nargs='+', default=None,
                   help="'all' or names of MODELS: run the table's cases "
                   '(--cases) for each')
    p.add_argument('--video', default='work_dirs/bench_scale/video_640x360.mp4')
    p.add_argument('--cases', nargs='+', default=None,
                   help='case names (default: all cases with --config, the '
                   'table cases with --models)')
    p.add_argument('--case', default=None, help=argparse.SUPPRESS)
    p.add_argument('--out', default=None, help='append JSON lines here')
    p.add_argument('--markdown', default=None,
                   help='write the markdown table of this run here')
    p.add_argument('--num-clips', type=int, default=None,
                   help="the test pipeline's SampleFrames num_clips")
    p.add_argument('--max-memory', default=None,
                   help='memory budget for the explainers, e.g. 4G')
    p.add_argument('--timeout', type=float, default=None,
                   help='seconds per case (then reported as not finished)')
    p.add_argument('--table-from', nargs='+', default=None, metavar='JSONL',
                   help='run nothing: print the markdown table of these '
                   'JSON-lines files (cases of a model and --num-clips '
                   'merged)')
    args = p.parse_args()
    if args.table_from:
        table = markdown_table(merge_records(args.table_from))
        print(table, end='')
        if args.markdown:
            with open(args.markdown, 'w') as f:
                f.write(table)
        return 0
    if args.case:
        print(json.dumps(run_case(args.config, args.video, CASES[args.case],
                                  args.num_clips, args.max_memory)))
        return 0
    if args.models:
        names = list(MODELS) if args.models == ['all'] else args.models
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            p.error(f'unknown models {unknown}; choose from {list(MODELS)}')
        jobs = [(n, MODELS[n]) for n in names]
        cases = args.cases or list(TABLE_CASES)
    elif args.config:
        jobs = [(args.config, args.config)]
        cases = args.cases or list(CASES)
    else:
        p.error('give --config or --models')
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f'unknown cases {unknown}; choose from {list(CASES)}')
    os.makedirs(osp.dirname(args.video), exist_ok=True)
    make_video(args.video)
    records = []
    for model, config in jobs:
        rows = run_cases(config, args.video, cases, args.num_clips,
                         args.max_memory, args.timeout, label=model)
        rec = dict(model=model, config=config, num_clips=args.num_clips,
                   max_memory=args.max_memory, rows=rows)
        records.append(rec)
        if args.out:
            with open(args.out, 'a') as f:
                f.write(json.dumps(rec) + '\n')
        if args.markdown:
            with open(args.markdown, 'w') as f:
                f.write(markdown_table(records))
    return 0


if __name__ == '__main__':
    sys.exit(main())
