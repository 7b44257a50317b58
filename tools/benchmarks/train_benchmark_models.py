#!/usr/bin/env python
"""Train the localisation benchmark's three recognizers with MMEngine's Runner.

Writes the synthetic data (``data/benchmark_synthetic``, deterministic), then
for each model trains ``configs/benchmark/<model>_synthetic.py`` with
``Runner.from_cfg(cfg).train()``, tests it with ``runner.test()`` on the
held-out split and saves ``checkpoints/benchmark/<model>_synthetic.pth``
(weights, ``meta`` and ``message_hub`` only) and the test accuracy in
``checkpoints/benchmark/accuracy.json``.

    .venv/bin/python tools/benchmarks/train_benchmark_models.py \
        [--models i3d tsm transformer] [--jobs 3] [--threads 1]

``--jobs N`` trains N models at once, each in its own process.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

MODELS = ('i3d', 'tsm', 'transformer')


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=MODELS)
    p.add_argument('--data-root', default='data/benchmark_synthetic')
    p.add_argument('--difficulty', default='medium')
    p.add_argument('--out-dir', default='checkpoints/benchmark')
    p.add_argument('--work-dir', default='work_dirs/benchmark')
    p.add_argument('--epochs', type=int, default=None,
                   help="override each config's max_epochs")
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--load-from', default=None,
                   help='start from these weights (continue a training); a '
                   "checkpoint of only {'state_dict': ...} (MMEngine loads "
                   'it with torch.load(weights_only=True))')
    p.add_argument('--train-per-class', type=int, default=None,
                   help='train on a larger training split of this many '
                   'clips per class (written to <data-root>_train<N>); '
                   'val/test unchanged')
    p.add_argument('--lr', type=float, default=None,
                   help="override the optimizer's learning rate")
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args()


def train_one(name: str, args: argparse.Namespace) -> dict:
    """Train, test and save one model; return its record."""
    import torch
    import mmxai  # noqa: F401  (compat shims)
    from mmengine.config import Config
    from mmengine.runner import Runner
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'benchmark',
                                   f'{name}_synthetic.py'))
    cfg.work_dir = osp.join(args.work_dir, name)
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        split = osp.splitext(osp.basename(ds.ann_file))[0]
        root = args.data_root
        if split == 'train' and args.train_per_class:
            root = large_train_split(args)
        ds.ann_file = osp.join(root, f'{split}.txt')
        ds.data_prefix = dict(video=root)
    if args.epochs:
        cfg.train_cfg.max_epochs = args.epochs
        for sch in cfg.param_scheduler:
            if sch.type == 'CosineAnnealingLR':
                sch.T_max, sch.end = args.epochs - sch.begin, args.epochs
    if args.load_from:
        cfg.load_from = args.load_from
    if args.lr:
        cfg.optim_wrapper.optimizer.lr = args.lr
    runner = Runner.from_cfg(cfg)
    t0 = time.time()
    runner.train()
    train_s = time.time() - t0
    acc = float(runner.test()['acc/top1'])
    os.makedirs(args.out_dir, exist_ok=True)
    ckpt = f'{name}_synthetic.pth'
    runner.save_checkpoint(args.out_dir, ckpt, save_optimizer=False,
                           save_param_scheduler=False)
    model = runner.model
    rec = dict(model=name, config=f'configs/benchmark/{name}_synthetic.py',
               checkpoint=osp.join(args.out_dir, ckpt),
               test_top1=acc, train_seconds=round(train_s, 1),
               epochs=int(cfg.train_cfg.max_epochs),
               train_clips=len(runner.train_dataloader.dataset),
               load_from=args.load_from, lr=float(
                   cfg.optim_wrapper.optimizer.lr),
               threads=torch.get_num_threads(),
               params=int(sum(p.numel() for p in model.parameters())),
               size_kb=round(osp.getsize(osp.join(args.out_dir, ckpt)) / 1024))
    print(f'[train_benchmark_models] {json.dumps(rec)}', flush=True)
    return rec


def large_train_split(args: argparse.Namespace) -> str:
    """Write (once) a training split of ``args.train_per_class`` clips per
    class; return its root."""
    from mmxai.datasets.synthetic_benchmark import (BENCHMARK_SPLITS,
                                                    generate_benchmark_dataset)
    root = f'{args.data_root}_train{args.train_per_class}'
    seed = BENCHMARK_SPLITS['train'][1]
    generate_benchmark_dataset(root, args.difficulty, splits=['train'],
                               sizes=dict(train=(args.train_per_class, seed)))
    return root


def save_record(rec: dict, out_dir: str) -> None:
    path = osp.join(out_dir, 'accuracy.json')
    data = {}
    if osp.isfile(path):
        with open(path) as f:
            data = json.load(f)
    data[rec['model']] = rec
    with open(path, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)


def main() -> int:
    args = parse_args()
    os.chdir(ROOT)
    from mmxai.datasets.synthetic_benchmark import generate_benchmark_dataset
    t = time.time()
    generate_benchmark_dataset(args.data_root, args.difficulty)
    print(f'[train_benchmark_models] data in {args.data_root} '
          f'({time.time() - t:.1f} s)', flush=True)
    if args.jobs > 1 and len(args.models) > 1:
        procs = []
        for name in args.models:
            cmd = [sys.executable, osp.abspath(__file__), '--models', name,
                   '--data-root', args.data_root, '--difficulty',
                   args.difficulty, '--out-dir', args.out_dir, '--work-dir',
                   args.work_dir, '--seed', str(args.seed)]
            if args.epochs:
                cmd += ['--epochs', str(args.epochs)]
            if args.threads:
                cmd += ['--threads', str(args.threads)]
            if args.lr:
                cmd += ['--lr', str(args.lr)]
            if args.train_per_class:
                cmd += ['--train-per-class', str(args.train_per_class)]
            procs.append(subprocess.Popen(cmd))
            while sum(p.poll() is None for p in procs) >= args.jobs:
                time.sleep(2)
        return max(p.wait() for p in procs)
    for name in args.models:
        save_record(train_one(name, args), args.out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
