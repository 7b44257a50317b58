"""Rebuild mmxai's demo: synthetic data, a trained tiny I3D, a demo clip.

Steps (all with the toolbox's own machinery):

1. write the train/val/test splits of the synthetic action dataset
   (:mod:`mmxai.datasets.synthetic`) into ``data/synthetic``;
2. train ``configs/demo/i3d_tiny_synthetic.py`` with MMEngine's
   ``Runner.from_cfg(cfg).train()`` and evaluate it with ``runner.test()``;
3. save ``demo/i3d_tiny_synthetic.pth`` (MMEngine checkpoint: ``meta``,
   ``state_dict``, ``message_hub``; no optimizer state), a held-out clip the
   model classifies correctly as ``demo/demo.mp4`` with its ground truth
   ``demo/demo_gt.npz``, and ``demo/README.md``.

Usage (from the repository root)::

    .venv/bin/python tools/make_demo.py
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

import mmxai  # noqa: F401  (compat shims before mmaction.models)
from mmxai.datasets import CLASSES, generate_dataset, make_clip, write_video

CONFIG = 'configs/demo/i3d_tiny_synthetic.py'
CKPT_NAME = 'i3d_tiny_synthetic.pth'


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--data-root', default='data/synthetic')
    p.add_argument('--out-dir', default='demo')
    p.add_argument('--work-dir', default='work_dirs/make_demo')
    p.add_argument('--train-per-class', type=int, default=150)
    p.add_argument('--val-per-class', type=int, default=25)
    p.add_argument('--test-per-class', type=int, default=50)
    p.add_argument('--epochs', type=int, default=None,
                   help='override max_epochs of the config')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--demo-label', type=int, default=0,
                   help=f'class of the demo clip: {list(enumerate(CLASSES))}')
    return p.parse_args()


def make_splits(root: str, args: argparse.Namespace) -> None:
    """(Re)write the three splits, each from its own seed."""
    if osp.isdir(root):
        shutil.rmtree(root)
    for i, (split, n) in enumerate([('train', args.train_per_class),
                                    ('val', args.val_per_class),
                                    ('test', args.test_per_class)]):
        t = time.time()
        ann = generate_dataset(root, n, split=split, seed=args.seed * 10 + i)
        print(f'[make_demo] {split}: {n * len(CLASSES)} clips -> {ann} '
              f'({time.time() - t:.1f} s)', flush=True)


def build_runner(args: argparse.Namespace):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        split = osp.splitext(osp.basename(ds.ann_file))[0]
        ds.ann_file = osp.join(args.data_root, f'{split}.txt')
        ds.data_prefix = dict(video=args.data_root)
    if args.epochs:
        if args.epochs < 2:
            raise SystemExit('error: --epochs must be >= 2 (warm-up + cosine)')
        cfg.train_cfg.max_epochs = args.epochs
        for sch in cfg.param_scheduler:
            if sch.type == 'CosineAnnealingLR':
                sch.T_max, sch.end = args.epochs - 1, args.epochs
    return cfg, Runner.from_cfg(cfg)


def pick_demo_clip(model, args: argparse.Namespace) -> dict:
    """First held-out clip of ``args.demo_label`` predicted right with p >= 0.9."""
    from mmaction.apis import inference_recognizer
    rng = np.random.default_rng(10_000 + args.seed)
    tmp = tempfile.mkdtemp(prefix='mmxai_demo_')
    try:
        for i in range(50):
            clip = make_clip(args.demo_label, rng)
            a = clip['active_frames']
            if a[0] < 4 or a[-1] > len(clip['frames']) - 5:
                continue  # keep the motion well inside the clip
            path = osp.join(tmp, f'cand_{i}.mp4')
            write_video(path, clip['frames'])
            with torch.no_grad():
                score = inference_recognizer(model, path).pred_score
            pred, conf = int(score.argmax()), float(score.max())
            if pred == args.demo_label and conf >= 0.9:
                clip['video'] = path
                clip['score'] = score.cpu().numpy()
                clip['tmp'] = tmp
                return clip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError('no correctly classified demo clip found in 50 tries')


def check_motion(model, n: int = 40, seed: int = 123) -> tuple:
    """Accuracy on ``n`` fresh clips, and how often playing them backwards flips
    the prediction to the opposite direction (the model must use the motion).

    Inputs are built like the test pipeline: frames ``::2``, ``[B, V=1, C, T, H, W]``.
    """
    opposite = {0: 1, 1: 0, 2: 3, 3: 2}
    mean, std = model.data_preprocessor.mean, model.data_preprocessor.std
    rng = np.random.default_rng(seed)
    right = flipped = 0
    for i in range(n):
        clip = make_clip(i % len(CLASSES), rng)
        f = torch.from_numpy(clip['frames'][::2].copy()).permute(3, 0, 1, 2).float()
        x = torch.stack([f, f.flip(1)])  # [2, C, T, H, W]: forward, backward
        x = ((x - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1))[:, None]
        with torch.no_grad():
            pred = model.cls_head(model.extract_feat(x, test_mode=True)[0]).argmax(-1)
        right += int(pred[0]) == clip['label']
        flipped += int(pred[1]) == opposite[clip['label']]
    return right, flipped, n


#: demo/README.md from this heading on is kept when the README is rewritten.
KEPT_FROM = '# Surgical demo'

README = """# mmxai demo artefacts

Rebuilt by `.venv/bin/python tools/make_demo.py` (from the repository root;
{train_s:.0f} s wall-clock of training, {train_cpu:.0f} s of process CPU time, on
{threads} CPU threads).

| file | what |
|---|---|
| `i3d_tiny_synthetic.pth` | MMEngine checkpoint (`meta`, `state_dict`, `message_hub`; no optimizer) of `configs/demo/i3d_tiny_synthetic.py`, {size_kb:.0f} KB |
| `demo.mp4` | a held-out clip ({T} frames, {S}x{S}, class `{label_name}`), predicted `{pred_name}` with p = {conf:.3f} |
| `demo_gt.npz` | its ground truth: `mask` bool [T, H, W], `active_frames`, `label` |

## Data: where the class evidence is
Synthetic clips (`mmxai/datasets/synthetic.py`): {T} frames of {S}x{S} RGB,
textured and noisy background, three identical-looking discs. Two never move
(distractors). The third stands still, then moves in a class-specific
direction (`{classes}`) during a random window of 40-60 % of the frames
(`active_frames`), then stands still again. A single frame carries no class
information: the evidence is the moving disc in the active frames, exactly
the `mask` of the ground-truth file. In `demo.mp4` the disc moves in frames
{a0}-{a1}.

## Model
Recognizer3D: ResNet3d-18 with 8 base channels (last stage 4x4 spatial cells
for a 64x64 input, 8 time steps for a 16-frame input), I3DHead, {params} parameters.
Trained from scratch for {epochs} epochs on {n_train} clips (AdamW, cosine
schedule) with MMEngine's `Runner`; input: 16 frames, one every 2, 64x64.

## Checks
The model uses the motion: on {n_chk} fresh clips it is right {right}/{n_chk}, and
playing them backwards flips its prediction to the opposite direction
{flipped}/{n_chk}. `mmaction.apis.inference_recognizer` with the config's test
pipeline predicts `demo.mp4` as `{pred_name}` (p = {conf:.3f}).

## Accuracy
Top-1 on the held-out test split ({n_test} clips, `runner.test()`):
**{acc:.2%}**.
"""


def main() -> int:
    args = parse_args()
    torch.manual_seed(args.seed)
    make_splits(args.data_root, args)
    cfg, runner = build_runner(args)

    t, cpu = time.time(), time.process_time()
    runner.train()
    train_s, train_cpu = time.time() - t, time.process_time() - cpu
    metrics = runner.test()
    acc = float(metrics['acc/top1'])
    print(f'[make_demo] training: {train_s:.1f} s wall, {train_cpu:.1f} s CPU; '
          f'test top-1: {acc:.4f}',
          flush=True)

    os.makedirs(args.out_dir, exist_ok=True)
    runner.save_checkpoint(args.out_dir, CKPT_NAME, save_optimizer=False,
                           save_param_scheduler=False)
    ckpt_path = osp.join(args.out_dir, CKPT_NAME)

    # Demo clip, checked with a model rebuilt from the saved checkpoint.
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmaction')
    model = MODELS.build(cfg.model)
    # Our own, freshly written file: a full unpickle is safe here.
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False)
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub'}, set(ckpt)
    model.load_state_dict(ckpt['state_dict'])
    model.cfg = cfg
    model.eval()
    right, flipped, n_chk = check_motion(model)
    print(f'[make_demo] fresh clips: {right}/{n_chk} right, time-reversed: '
          f'{flipped}/{n_chk} predicted as the opposite direction', flush=True)
    clip = pick_demo_clip(model, args)
    shutil.copyfile(clip['video'], osp.join(args.out_dir, 'demo.mp4'))
    shutil.rmtree(clip['tmp'], ignore_errors=True)
    np.savez_compressed(osp.join(args.out_dir, 'demo_gt.npz'),
                        mask=clip['mask'], active_frames=clip['active_frames'],
                        label=np.int64(clip['label']))
    pred = int(clip['score'].argmax())
    T, S = clip['frames'].shape[:2]
    readme = osp.join(args.out_dir, 'README.md')
    kept = ''  # the sections this script does not make (the surgical demo)
    if osp.isfile(readme):
        with open(readme) as f:
            text = f.read()
        at = text.find(KEPT_FROM)
        kept = '' if at < 0 else '\n' + text[at:]
    with open(readme, 'w') as f:
        f.write(README.format(
            train_s=train_s, train_cpu=train_cpu, threads=torch.get_num_threads(),
            size_kb=osp.getsize(ckpt_path) / 1024, T=T, S=S,
            label_name=CLASSES[clip['label']], pred_name=CLASSES[pred],
            conf=float(clip['score'].max()), classes='`, `'.join(CLASSES),
            a0=int(clip['active_frames'][0]), a1=int(clip['active_frames'][-1]),
            params=f'{sum(p.numel() for p in model.parameters()):,}',
            epochs=cfg.train_cfg.max_epochs,
            n_train=args.train_per_class * len(CLASSES),
            n_test=args.test_per_class * len(CLASSES), acc=acc,
            right=right, flipped=flipped, n_chk=n_chk) + kept)
    print(f'[make_demo] wrote {ckpt_path} ({osp.getsize(ckpt_path) / 1024:.0f} KB), '
          f'{args.out_dir}/demo.mp4 (label {CLASSES[clip["label"]]}, '
          f'p={clip["score"].max():.3f}), demo_gt.npz, README.md', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
