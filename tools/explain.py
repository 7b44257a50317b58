#!/usr/bin/env python
"""Explain an MMAction2 recognizer's decisions on a video (or a dataset).

    python tools/explain.py CONFIG CHECKPOINT VIDEO [--method gradcam]
        [--target-layers backbone.layer4] [--target pred|gt|INDEX]
        [--out-dir DIR] [--device cpu] [--cfg-options k=v ...]
        [--trust-checkpoint]

A two-stage phase model (frame CNN + CausalMSTCNHead) over a whole video:

    python tools/explain.py CONFIG CHECKPOINT VIDEO --sequence
        [--times 40m 41m | every:30s | transitions] [--gt PHASE_FILE]
    python tools/explain.py CONFIG CHECKPOINT VIDEO --windows --sequence
        (both: spatial maps per window and the moments that drive each
        window's phase, in one timeline, overlay and viewer)

With a CONFIG and CHECKPOINT but no VIDEO, the config's test dataset is
explained through the Runner (see docs/integration.md), also under
``torchrun --nproc_per_node N tools/explain.py CONFIG CKPT --launcher
pytorch``. Errors a user can
fix print one line and exit with status 2; nothing is left half-written.
"""
import argparse
import os
import os.path as osp
import sys
import time
import warnings

# mmcv-lite has no compiled ops; RGB recognizers do not need them.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeform')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_value(text: str):
    """``'0.6'`` -> 0.6, ``'true'`` -> True, ``'a,b'`` -> ['a', 'b']."""
    import ast
    if ',' in text and not text.startswith(('[', '(')):
        return [parse_value(t) for t in text.split(',') if t]
    low = text.lower()
    if low in ('true', 'false'):
        return low == 'true'
    if low in ('none', 'null'):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line: ``error: ...`` and exit status 2."""

    def error(self, message):
        print(f'error: {message} (see --help)', file=sys.stderr)
        sys.exit(2)


def key_value_action():
    """MMEngine's ``DictAction``, with ``KEY`` alone refused in one line."""
    from mmengine.config import DictAction

    class KeyValue(DictAction):
        def __call__(self, parser, namespace, values, option_string=None):
            for kv in values if isinstance(values, list) else [values]:
                if '=' not in kv:
                    parser.error(f"{option_string}: '{kv}' is not "
                                 'key=value')
            super().__call__(parser, namespace, values, option_string)
    return KeyValue


def parse_args(argv=None):
    DictAction = key_value_action()
    p = OneLineParser(
        description='Explain an MMAction2 recognizer on a video or dataset.')
    p.add_argument('config', nargs='?',
                   help='model config file (or mmaction::...)')
    p.add_argument('checkpoint', nargs='?',
                   help='checkpoint file or http(s) URL')
    p.add_argument('video', nargs='?', default=None,
                   help='video file; omit to explain the test dataset')
    p.add_argument('--method', default='gradcam',
                   help='gradcam, gradcam++, saliency_tubes, ... '
                   "(see --list-methods)")
    p.add_argument('--list-methods', action='store_true',
                   help='print the available methods and exit')
    p.add_argument('--target-layers', nargs='+', default=None,
                   help='dotted module names (default: per model family)')
    p.add_argument('--weighting', choices=['global', 'temporal'],
                   default=None, help='Grad-CAM channel weights')
    p.add_argument('--target', default='pred',
                   help="'pred', 'gt' (needs --label) or a class index")
    p.add_argument('--label', type=int, default=-1,
                   help='ground-truth class of the video, if known')
    p.add_argument('--cfp-theta', default=None,
                   help="cfp: threshold (float) or a paper key, e.g. 'i3d'")
    p.add_argument('--cfp-depth', type=int, default=None,
                   help='cfp: number of back-steps D')
    p.add_argument('--method-options', nargs='+', action=DictAction,
                   default={}, help='more method settings, key=value')
    p.add_argument('--max-memory', default=None,
                   help='memory budget of the explanation, e.g. 4G or 512M: '
                   'sets views per pass and batch sizes (default: from the '
                   'free memory of the device; docs/scale.md)')
    p.add_argument('--grad-checkpoint', default=None,
                   choices=('auto', 'on', 'off'),
                   help='input-gradient methods (saliency, '
                   'integrated_gradients, smoothgrad, swagv): run the '
                   "backbone's blocks under gradient checkpointing, less "
                   'memory for one extra forward of each block per backward '
                   '(default auto: on with --max-memory toolbox or when one '
                   "view's graph exceeds the budget; docs/scale.md)")
    p.add_argument('--out-dir', default=None,
                   help='output folder (default: work_dirs/explain/'
                   '<video>_<method>)')
    p.add_argument('--outputs', nargs='+', default=None,
                   help='json npz video gif montage plot (default: all but '
                   'gif for a video, json npz for a dataset); --sequence: '
                   'json npz csv png (default: all)')
    p.add_argument('--gif', action='store_true', help='also write a GIF')
    p.add_argument('--per-view-maps', action='store_true',
                   help='maps.npz also holds every view\'s maps (default: '
                   'one float16 map per original frame, views combined)')
    p.add_argument('--label-map', default=None,
                   help='class names, one per line')
    p.add_argument('--device', default='cpu', help='cpu, cuda:0, ...')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow a checkpoint that needs arbitrary pickled '
                   'objects (runs code from the file: trusted sources only)')
    p.add_argument('--allow-partial-checkpoint', action='store_true',
                   help='load a checkpoint that does not fit the model '
                   '(missing keys, other shapes) anyway; the warning goes '
                   'into every JSON')
    p.add_argument('--split', default='test', choices=['test', 'val'],
                   help='dataset runs: which dataloader')
    p.add_argument('--no-resume', action='store_true',
                   help='dataset runs: redo samples already finished')
    p.add_argument('--launcher', default='none',
                   choices=['none', 'pytorch', 'slurm', 'mpi'],
                   help='dataset runs: distributed launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    g = p.add_argument_group(
        'long videos', 'explain a whole video window by window '
        '(docs/long_video.md)')
    g.add_argument('--windows', action='store_true',
                   help='windows over the whole video: timeline.csv/json/'
                   'png, overlay.mp4, index.html, per-window records')
    g.add_argument('--stride', default=None,
                   help='window stride: seconds (2, 2.5s), frames (48f) '
                   '(default: the window span)')
    g.add_argument('--window-span', default=None,
                   help='segment (2D) models: the span of one window '
                   '(default: one second per segment)')
    g.add_argument('--start', default=None, help='start time (s, 48f, m:ss)')
    g.add_argument('--end', default=None, help='end time (s, 48f, m:ss)')
    g.add_argument('--batch-size', type=int, default=4,
                   help='windows per model pass')
    g.add_argument('--views', choices=['one', 'crops'], default='one',
                   help="one view per window, or the test pipeline's crops")
    g.add_argument('--gt', default=None,
                   help='per-frame labels: Cholec80 phase file or CSV '
                   '(frame|time,label)')
    g.add_argument('--overlay-fps', type=float, default=5.0,
                   help='frame rate of overlay.mp4')
    g.add_argument('--overlay-size', type=int, default=480,
                   help='longest side of overlay.mp4')
    g.add_argument('--map-size', type=int, default=64,
                   help='longest side of the stored maps')
    g.add_argument('--no-progress', action='store_true',
                   help='no progress lines (also the methods\' own bars)')
    q = p.add_argument_group(
        'phase sequences', 'two-stage phase models (frame CNN + '
        'CausalMSTCNHead): which moments drive the phase at time t, over '
        'cached frame features (docs/surgical.md)')
    q.add_argument('--sequence', action='store_true',
                   help='temporal attribution over the whole video: '
                   'importance.npz/csv/png, sequence.json, features/ cache; '
                   'with --windows both, combined in the timeline, overlay '
                   'and viewer (the sequence in OUT/sequence/, explained at '
                   "every window's time unless --times)")
    q.add_argument('--times', nargs='+', default=None,
                   help="times to explain: 40m 1:30 90 ..., 'every:30s' or "
                   "'transitions' (default: the predicted phase changes)")
    q.add_argument('--sequence-methods', nargs='+',
                   default=['occlusion', 'ig', 'shapley'],
                   help='occlusion ig shapley (default: all three)')
    q.add_argument('--context', default='full',
                   help="'full' (the causal TCN over the whole video, "
                   "bounded by its receptive field), 'window' (the test "
                   "pipeline's clip_len) or a number of grid frames")
    q.add_argument('--baseline', default='mean',
                   help="what replaces a frame's features: 'mean' (of the "
                   "context), 'zeros' or a number")
    q.add_argument('--score', choices=['logit', 'prob'], default='logit',
                   help='the score of the target at t')
    q.add_argument('--sample-fps', type=float, default=None,
                   help="the feature grid's rate (default: the config's)")
    q.add_argument('--until', choices=['video', 'last'], default='video',
                   help="features of the whole video, or only up to the "
                   "last explained time (online)")
    q.add_argument('--feature-batch', type=int, default=32,
                   help='grid frames per backbone pass')
    q.add_argument('--refresh-features', action='store_true',
                   help='recompute a feature cache made for another '
                   'video/checkpoint/settings (default: refuse it)')
    q.add_argument('--ig-steps', type=int, default=32,
                   help='integrated gradients: steps')
    q.add_argument('--shapley-players', type=int, default=8,
                   help='frame Shapley: groups of context frames')
    q.add_argument('--cams', type=int, default=0,
                   help='CAMs on the top K frames of each explained time '
                   '(frames.png)')
    p.add_argument('--traceback', action='store_true',
                   help='show the full traceback on errors')
    p.add_argument('--verbose', action='store_true',
                   help="show the toolbox's and the decoder's own messages")
    args = p.parse_args(argv)
    if not args.list_methods and (args.config is None or
                                  args.checkpoint is None):
        p.error('CONFIG and CHECKPOINT are required')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def method_options(args) -> dict:
    opts = {k: v for k, v in dict(args.method_options or {}).items()}
    if args.target_layers:
        opts['target_layers'] = args.target_layers
    if args.weighting:
        opts['weighting'] = args.weighting
    if args.cfp_theta is not None:
        opts['theta'] = parse_value(args.cfp_theta)
    if args.cfp_depth is not None:
        opts['depth'] = args.cfp_depth
    if getattr(args, 'max_memory', None) is not None:
        opts['max_memory'] = args.max_memory
    if getattr(args, 'grad_checkpoint', None) is not None:
        opts['grad_checkpoint'] = args.grad_checkpoint
    return opts


def parse_target(text: str):
    return int(text) if text.lstrip('-').isdigit() else text


def run_video(args, cfg) -> int:
    from mmxai.apis import explain_video
    from mmxai.apis.inference import default_out_dir
    from mmxai.outputs import VIDEO_DEFAULT
    outputs = list(args.outputs or VIDEO_DEFAULT)
    if args.gif and 'gif' not in outputs:
        outputs.append('gif')
    start = time.perf_counter()
    result = explain_video(
        cfg, args.video, method=args.method,
        target=parse_target(args.target),
        out_dir=args.out_dir or default_out_dir(args.video, args.method),
        class_names=args.label_map, outputs=outputs, label=args.label,
        checkpoint=args.checkpoint, device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        per_view_maps=args.per_view_maps, **method_options(args))
    exp = result.explanation
    t = int(exp.targets[0])
    print(f'{exp.method}: explained class {result.target_label()} '
          f'(p={float(exp.probs[0, t]):.3f}) on {args.video} in '
          f'{exp.settings.get("seconds", 0):.2f} s '
          f'(total {time.perf_counter() - start:.1f} s)')
    print_files(result.files)
    return 0


def long_video_options(args) -> dict:
    """The keywords of explain_long_video the --windows flags set (not the
    method, target, ground truth or model)."""
    return dict(stride=args.stride, window_span=args.window_span,
                start=args.start, end=args.end, batch_size=args.batch_size,
                views=args.views,
                outputs=args.outputs or ['timeline', 'video', 'html', 'maps'],
                overlay_fps=args.overlay_fps, overlay_size=args.overlay_size,
                map_size=args.map_size, resume=not args.no_resume)


def windows_out_dir(args) -> str:
    from mmxai.apis.inference import default_out_dir
    return args.out_dir or default_out_dir(args.video, args.method) + \
        '_windows'


def print_files(files: dict) -> None:
    for kind, path in sorted(files.items()):
        print(f'  {kind:8s} {path}')


def run_windows(args, cfg) -> int:
    from mmxai.apis import explain_long_video
    tl = explain_long_video(
        cfg, args.video, method=args.method,
        target=parse_target(args.target), out_dir=windows_out_dir(args),
        gt=args.gt, class_names=args.label_map,
        progress=not args.no_progress, checkpoint=args.checkpoint,
        device=args.device, trust_checkpoint=args.trust_checkpoint,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        **long_video_options(args), **method_options(args))
    print_windows(args, tl)
    print_files(tl.files)
    return 0


def sequence_times(args):
    times = args.times
    if times is not None and len(times) == 1 and (
            times[0] == 'transitions' or times[0].startswith('every')):
        times = times[0]
    return times


def sequence_options(args) -> dict:
    """The keywords of explain_phase_sequence the --sequence flags set
    (not the times, methods, target, ground truth or model)."""
    context = int(args.context) if str(args.context).isdigit() else \
        args.context
    return dict(context=context, baseline=parse_value(args.baseline),
                score=args.score, sample_fps=args.sample_fps,
                until=args.until, batch_size=args.feature_batch,
                refresh_features=args.refresh_features,
                ig_steps=args.ig_steps,
                shapley_players=args.shapley_players, cams=args.cams)


def print_windows(args, tl) -> None:
    failed = tl.failed
    acc = '' if tl.accuracy is None else \
        f', frame accuracy {tl.accuracy:.1%}'
    print(f'{tl.settings["method"]}: {len(tl)} windows on {args.video}'
          f'{acc}' + (f', {len(failed)} failed (see timeline.csv)'
                      if failed else ''))


def run_sequence(args, cfg) -> int:
    from mmxai.apis import explain_phase_sequence
    from mmxai.apis.inference import default_out_dir
    out_dir = args.out_dir or default_out_dir(args.video, 'sequence')
    res = explain_phase_sequence(
        cfg, args.video, times=sequence_times(args),
        methods=args.sequence_methods, target=parse_target(args.target),
        out_dir=out_dir, gt=args.gt, class_names=args.label_map,
        outputs=args.outputs or ('json', 'npz', 'csv', 'png'),
        progress=not args.no_progress, checkpoint=args.checkpoint,
        device=args.device, trust_checkpoint=args.trust_checkpoint,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        **sequence_options(args))
    print_sequence(args, res)
    print_files(res.files)
    return 0


def run_phase_video(args, cfg) -> int:
    """--windows --sequence: both, combined in the long-video outputs."""
    from mmxai.apis import explain_phase_video
    opts = sequence_options(args)
    if args.no_resume:  # recompute everything, the features too
        opts['refresh_features'] = True
    tl, res = explain_phase_video(
        cfg, args.video, method=args.method, out_dir=windows_out_dir(args),
        times=sequence_times(args), sequence_methods=args.sequence_methods,
        sequence_options=opts, gt=args.gt,
        target=parse_target(args.target), class_names=args.label_map,
        checkpoint=args.checkpoint, device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        progress=not args.no_progress, **long_video_options(args),
        **method_options(args))
    print_windows(args, tl)
    print_sequence(args, res)
    print_files(tl.files)
    return 0


def print_sequence(args, res) -> None:
    acc = '' if res.accuracy is None else \
        f', frame accuracy {res.accuracy:.1%}'
    st = res.settings
    print(f'phase sequence: {len(res.times)} times explained on '
          f'{args.video} ({", ".join(st["methods"])}; context '
          f'{st["context_frames"]} grid frames at {st["grid_fps"]:g} fps; '
          f'features computed for {res.computed_frames} of '
          f'{st["explained_until"]} frames, the rest cached{acc}) in '
          f'{res.timings["total"]:.1f} s')


def run_dataset(args, cfg) -> int:
    from mmxai.apis import explain_dataset
    from mmxai.apis.inference import default_out_dir
    from mmxai.outputs import DATASET_DEFAULT
    out_dir = args.out_dir or default_out_dir(args.config, args.method)
    manifest = explain_dataset(
        cfg, args.checkpoint, out_dir, method=args.method,
        split=args.split, launcher=args.launcher,
        resume=not args.no_resume, trust_checkpoint=args.trust_checkpoint,
        target=parse_target(args.target),
        outputs=args.outputs or DATASET_DEFAULT,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        **method_options(args))
    if int(os.environ.get('RANK', '0')) == 0:
        print(f'manifest: {manifest}')
    return 0


def preflight(args):
    """Check files and options before the heavy imports (well under 2 s):
    returns the config with ``--cfg-options`` merged.

    Raises:
        mmxai.errors.MMXAIError: one line naming the input and the fix.
    """
    root = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'mmxai')
    load = _light_loader(root)
    load('errors')
    pre = load('preflight')
    cfg = pre.load_config(args.config, dict(args.cfg_options or {}))
    num_classes = pre.config_num_classes(cfg)
    pre.check_checkpoint_file(args.checkpoint, args.video)
    if args.video is not None:
        pre.check_video_file(args.video)
    if args.out_dir:
        pre.check_out_dir(args.out_dir)
    pre.check_device_name(args.device)
    pre.check_label_map(args.label_map, num_classes)
    windows = getattr(args, 'windows', False)
    sequence = getattr(args, 'sequence', False)
    if windows or sequence:
        if args.video is None:
            raise pre.InputError(f'--{"windows" if windows else "sequence"}'
                                 ' needs a VIDEO')
        pre.check_long_video_options(args)
    if sequence:
        check_sequence_options(args, cfg, pre, combined=windows)
        windows = True  # the target may be 'gt' with --gt
    pre.check_target(parse_target(args.target), num_classes,
                     label=args.label,
                     dataset=args.video is None or bool(windows and args.gt))
    pre.check_method_name(args.method, cfg)
    if args.video is None:
        pre.check_annotation_file(cfg, args.split)
    return cfg


def check_sequence_options(args, cfg, pre, combined: bool = False) -> None:
    """The --sequence flags and the model's head, from the config alone
    (``combined``: with ``--windows``, whose ``--outputs`` they are).

    Raises:
        mmxai.errors.MMXAIError: one line naming the flag (or the head).
    """
    head = (cfg.get('model') or {}).get('cls_head') or {}
    kind = str(head.get('type', '')).split('.')[-1]
    if kind != 'CausalMSTCNHead':
        raise pre.ConfigError(
            f'--sequence explains two-stage phase models whose head is '
            f'CausalMSTCNHead; this config\'s head is {kind or "missing"} '
            '(use --windows or the single-clip mode for it)')
    for m in args.sequence_methods:
        if m not in ('occlusion', 'ig', 'shapley'):
            raise pre.InputError(f'--sequence-methods {m!r}: choose from '
                                 'occlusion ig shapley')
    c = str(args.context)
    if c not in ('full', 'window') and not (c.isdigit() and int(c) >= 1):
        raise pre.InputError(f"--context {c!r}: give 'full', 'window' or a "
                             'number of grid frames >= 1')
    for name in ('feature_batch', 'ig_steps', 'shapley_players'):
        if getattr(args, name) < 1:
            raise pre.InputError(f'--{name.replace("_", "-")} '
                                 f'{getattr(args, name)}: give 1 or more')
    bad = [o for o in args.outputs or () if o not in ('json', 'npz', 'csv',
                                                      'png')]
    if bad and not combined:
        raise pre.InputError(f'--outputs {" ".join(bad)}: --sequence writes '
                             'json npz csv png')
    if args.cams < 0:
        raise pre.InputError(f'--cams {args.cams}: give 0 or more')
    if args.sample_fps is not None and not args.sample_fps > 0:
        raise pre.InputError(f'--sample-fps {args.sample_fps}: give a rate '
                             '> 0')
    for t in args.times or ():
        if t != 'transitions' and not t.startswith('every'):
            pre.parse_time_spec(t, '--times')


def _light_loader(root: str):
    """``load(name)`` imports ``mmxai.<name>`` from ``root`` without the
    package's ``__init__`` (torch, the toolbox: seconds). The module keeps
    its real name in ``sys.modules``, so the later ``import mmxai`` reuses
    it: the error classes are the same. Only for modules that import the
    standard library and modules loaded this way."""
    import importlib.util

    def load(name):
        full = f'mmxai.{name}'
        if sys.modules.get(full) is not None:
            return sys.modules[full]
        spec = importlib.util.spec_from_file_location(
            full, osp.join(root, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        return module
    return load


def _quiet_toolbox() -> None:
    """MMEngine's own notices (deprecations, environment) off the console;
    ``--verbose`` keeps them."""
    import logging

    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what cluster schedulers send), cleaned up like Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated


def main(argv=None) -> int:
    import signal
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    except KeyboardInterrupt as e:
        what = 'terminated' if isinstance(e, Terminated) else 'interrupted'
        print(f'{what}: nothing half-written was kept', file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130


def _main(argv=None) -> int:
    args = parse_args(argv)
    cfg = None
    if not args.list_methods:
        try:
            cfg = preflight(args)
        except Exception as e:  # noqa: BLE001
            if args.traceback:
                raise
            return _print_error(e, type(e).__module__ == 'mmxai.errors')
    try:
        import mmxai  # noqa: F401
        from mmxai.errors import MMXAIError
    except Exception as e:  # broken installation
        print(f'error: cannot import mmxai: {e}', file=sys.stderr)
        return 2
    if args.list_methods:
        from mmxai.explainers import method_names
        print('\n'.join(sorted(method_names())))
        return 0
    if args.verbose:
        os.environ['MMXAI_VERBOSE'] = '1'  # the decoder's own messages too
    elif args.video:
        _quiet_toolbox()
    if getattr(args, 'no_progress', False):  # the explainers' bars too
        os.environ['MMXAI_NO_PROGRESS'] = '1'
    try:
        if args.video and args.windows and args.sequence:
            return run_phase_video(args, cfg)
        if args.video and args.windows:
            return run_windows(args, cfg)
        if args.video and args.sequence:
            return run_sequence(args, cfg)
        return run_video(args, cfg) if args.video else run_dataset(args, cfg)
    except Exception as e:  # noqa: BLE001
        if args.traceback:
            raise
        return _print_error(e, isinstance(e, MMXAIError))


def _print_error(e: Exception, fixable: bool) -> int:
    """One line on stderr: the message of an error the user can fix (exit
    2), or the type and first line of one not foreseen (exit 1)."""
    if fixable:
        print(f'error: {e}', file=sys.stderr)
        return 2
    first = str(e).strip().splitlines()[0] if str(e).strip() else ''
    print(f'error: {type(e).__name__}: {first} (run with --traceback for '
          'details)', file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
