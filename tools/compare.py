#!/usr/bin/env python
"""Which explanation to trust for your model: run several methods on the
same clips and compare them by evidence (docs/compare.md).

    python tools/compare.py CONFIG CHECKPOINT VIDEO [VIDEO ...]
        [--methods gradcam saliency ... | --all] [--budget fast|full]
        [--target pred|INDEX] [--out-dir DIR] [--device cpu]

Writes compare.json, compare.md, agreement.png, index.html and, per clip,
clips/<i>/overlay.mp4 (a tile per method), montage.png and the methods'
maps. Errors a user can fix print one line and exit with status 2, before
anything is written.
"""
import os
import os.path as osp
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeform')
HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))
sys.path.insert(0, HERE)

from explain import (OneLineParser, _light_loader, _print_error,  # noqa: E402
                     _quiet_toolbox, key_value_action, parse_target)


def parse_args(argv=None):
    DictAction = key_value_action()
    p = OneLineParser(description='Compare explanation methods on your own '
                      'model and clips.')
    p.add_argument('config', help='model config file (or mmaction::...)')
    p.add_argument('checkpoint', help='checkpoint file or http(s) URL')
    p.add_argument('videos', nargs='+', help='video files (one clip each)')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--methods', nargs='+', default=None,
                   help='method names (default: gradcam, gradcam++, '
                   'saliency_tubes, saliency, integrated_gradients, '
                   'smoothgrad, occlusion, rise, lime, attention_rollout)')
    g.add_argument('--all', action='store_true',
                   help='every registered method')
    p.add_argument('--budget', choices=['fast', 'full'], default='fast',
                   help='fast: small perturbation budgets, 10-step curves '
                   '(about a minute per clip of the bundled model on 2 '
                   "cores); full: the methods' own defaults, 128 steps")
    p.add_argument('--target', default='pred',
                   help="'pred' (each clip's prediction) or a class index")
    p.add_argument('--no-sanity', action='store_true',
                   help='skip the randomisation sanity check')
    p.add_argument('--out-dir', default=None,
                   help='output folder (default: work_dirs/compare/<video>)')
    p.add_argument('--label-map', default=None,
                   help='class names, one per line')
    p.add_argument('--device', default='cpu', help='cpu, cuda:0, ...')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow a checkpoint that needs arbitrary pickled '
                   'objects (trusted sources only)')
    p.add_argument('--quiet', action='store_true', help='no progress lines')
    p.add_argument('--traceback', action='store_true',
                   help='show the full traceback on errors')
    return p.parse_args(argv)


def default_out_dir(videos) -> str:
    stem = osp.splitext(osp.basename(videos[0]))[0]
    more = f'_and_{len(videos) - 1}' if len(videos) > 1 else ''
    return osp.join('work_dirs', 'compare', stem + more)


def preflight(args):
    """Input checks before the heavy imports; returns the config."""
    load = _light_loader(osp.join(osp.dirname(HERE), 'mmxai'))
    load('errors')
    pre = load('preflight')
    cfg = pre.load_config(args.config, dict(args.cfg_options or {}))
    num_classes = pre.config_num_classes(cfg)
    pre.check_checkpoint_file(args.checkpoint, args.videos[0])
    for v in args.videos:
        pre.check_video_file(v)
    if args.out_dir:
        pre.check_out_dir(args.out_dir)
    pre.check_device_name(args.device)
    pre.check_label_map(args.label_map, num_classes)
    target = parse_target(args.target)
    if target != 'pred' and not isinstance(target, int):
        raise pre.InputError(f"--target: 'pred' or a class index, got "
                             f"'{args.target}'")
    pre.check_target(target, num_classes)
    return cfg


def run(args, cfg) -> int:
    from mmxai.apis import compare_methods
    start = time.perf_counter()
    if args.quiet:  # the explainers' own progress bars too
        os.environ['MMXAI_NO_PROGRESS'] = '1'
    log = None if args.quiet else (
        lambda s: print(f'[{time.perf_counter() - start:6.1f} s] {s}',
                        flush=True))
    out_dir = args.out_dir or default_out_dir(args.videos)
    result = compare_methods(
        cfg, args.videos, methods=args.methods, all_methods=args.all,
        budget=args.budget, out_dir=out_dir,
        target=parse_target(args.target), class_names=args.label_map,
        checkpoint=args.checkpoint, device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        sanity=not args.no_sanity, log=log)
    print('recommendation:')
    for line in result.recommendation:
        print(f'  - {line}')
    for kind, path in sorted(result.files.items()):
        print(f'  {kind:9s} {path}')
    print(f'total {time.perf_counter() - start:.1f} s')
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
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
    _quiet_toolbox()
    try:
        return run(args, cfg)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        if args.traceback:
            raise
        return _print_error(e, isinstance(e, MMXAIError))


if __name__ == '__main__':
    sys.exit(main())
