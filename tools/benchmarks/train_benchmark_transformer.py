#!/usr/bin/env python
"""Train a pure video transformer (MMAction2's VideoMAE-style
``VisionTransformer``, or a ``SwinTransformer3D``) on the localisation
benchmark's synthetic task, distilled from the benchmark's trained I3D.

Why not MMEngine's Runner (as ``train_benchmark_models.py``): the clips are
drawn in memory by :func:`mmxai.datasets.synthetic.make_clip` (fresh clips
every epoch, a difficulty curriculum) and the loss reads a frozen teacher
(soft targets and its 8x4x4 feature grid), neither of which the Runner's
file dataset and a Recognizer's own loss provide without registering a
dataset and a distillation model. The student is built with
``MODELS.build`` from the config this script writes, its weights are
saved as an MMEngine-style checkpoint (``meta``, ``state_dict``), and the
test accuracy is measured by ``mmxai.apis.init_recognizer`` on that config
and checkpoint through MMAction2's test pipeline (the decoded MP4s of
``data/benchmark_synthetic/test``), i.e. the way the benchmark loads it.

Loss per batch (student logits ``s``, teacher logits ``t``, temperature
``tau``, student tokens after the last block ``z`` ``[B, C, 8, 4, 4]``,
teacher backbone output ``f`` ``[B, 64, 8, 4, 4]``, a 1x1x1 linear
adapter ``P`` used only for training)::

    L = (1 - a) CE(s, y) + a tau^2 KL(softmax(t / tau) || softmax(s / tau))
        + b mean_{cells} || LN(P z) - LN(f) ||^2

    .venv/bin/python tools/benchmarks/train_benchmark_transformer.py \
        --arch vit --epochs 12 --threads 2 --out work_dirs/bench_transformer

The students' grids ``z_i``: the ViT's after block ``i``; the Swin's after
stage ``i`` (before its patch merging; with ``--stem conv``, 8x8x8 then
8x4x4, matching the teacher's ``layer2`` and ``layer4``). The shipped
Video Swin (``configs/benchmark/swin_conv_synthetic.py``)::

    nice -n 10 .venv/bin/python \
        tools/benchmarks/train_benchmark_transformer.py --arch swin \
        --stem conv --embed 64 --heads 4 --clips 400 \
        --epochs 200 --time-limit 35 --warmup 0.5 --alpha 0.5 --beta 1 \
        --pairs 0:layer2 last:layer4 --eval-every 2 --val-clips 100 \
        --threads 1 --out work_dirs/bench_transformer/swin_conv \
        --name swin_conv_synthetic
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

TEACHER_CONFIG = 'configs/benchmark/i3d_synthetic.py'
TEACHER_CKPT = 'checkpoints/benchmark/i3d_synthetic.pth'
MEAN, STD = 127.5, 58.0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='vit', choices=('vit', 'swin'))
    p.add_argument('--embed', type=int, default=96)
    p.add_argument('--depth', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--patch', type=int, default=None,
                   help='spatial patch size (default: ViT 16; Swin 4 with '
                   "the linear patch embedding, 8 with --stem conv)")
    p.add_argument('--window', type=int, nargs=3, default=None,
                   help='Swin window (default: 8 4 4; 4 4 4 with --stem '
                   'conv)')
    p.add_argument('--stem-channels', type=int, nargs=2, default=[16, 32],
                   help='hidden widths of the Swin conv stem')
    p.add_argument('--tubelet', type=int, default=2)
    p.add_argument('--learnable-pos', action='store_true')
    p.add_argument('--stem', default='patch', choices=('patch', 'conv'),
                   help="token embedding: 'patch' (MMAction2's linear "
                   "tubelet embedding) or 'conv' (a small convolutional "
                   'stem with the same output grid: mmxai.models.'
                   'conv_stem_vit / conv_stem_swin)')
    p.add_argument('--clips', type=int, default=1600,
                   help='training clips drawn per epoch')
    p.add_argument('--fresh', type=float, default=1.0,
                   help='fraction of the training clips redrawn each epoch')
    p.add_argument('--difficulty', default='medium',
                   help="final difficulty (name or number in [0, 1])")
    p.add_argument('--curriculum', type=int, default=0,
                   help='epochs over which the difficulty rises linearly '
                   'from 0 (easy) to --difficulty (0: none)')
    p.add_argument('--epochs', type=int, default=12)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--wd', type=float, default=0.0)
    p.add_argument('--warmup', type=float, default=1.0, help='epochs')
    p.add_argument('--alpha', type=float, default=0.5,
                   help='weight of the teacher soft-target KL (0: off)')
    p.add_argument('--tau', type=float, default=2.0)
    p.add_argument('--beta', type=float, default=1.0,
                   help='weight of the feature-grid distillation (0: off)')
    p.add_argument('--pairs', nargs='+', default=['last:layer4'],
                   help='feature-distillation pairs STUDENT_BLOCK:TEACHER_'
                   "LAYER (ViT block / Swin stage index or 'last' = the "
                   'last, after the norm; '
                   "teacher: a submodule of the I3D backbone, e.g. layer3)")
    p.add_argument('--drop-path', type=float, default=0.0)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--time-limit', type=float, default=0,
                   help='stop training after this many minutes (0: none)')
    p.add_argument('--eval-every', type=int, default=1)
    p.add_argument('--val-clips', type=int, default=200,
                   help='in-memory validation clips (fixed seed)')
    p.add_argument('--test-roots', nargs='*',
                   default=['data/benchmark_synthetic',
                            'data/benchmark_synthetic_seed1717'])
    p.add_argument('--out', default='work_dirs/bench_transformer/vit')
    p.add_argument('--eval', nargs=2, metavar=('CONFIG', 'CKPT'),
                   help='only test this config + checkpoint on --test-roots')
    p.add_argument('--load-from', default=None,
                   help="start from this checkpoint's state_dict (a "
                   'second run: new optimiser and schedule)')
    p.add_argument('--name', default=None,
                   help='checkpoint/config stem (default: <arch>_synthetic)')
    args = p.parse_args(argv)
    if args.patch is None:
        args.patch = (16 if args.arch == 'vit' else
                      8 if args.stem == 'conv' else 4)
    if args.window is None:
        args.window = [4, 4, 4] if args.stem == 'conv' else [8, 4, 4]
    return args


# ---------------------------------------------------------------- model ----

def student_model_cfg(args: argparse.Namespace) -> dict:
    """The student's MMAction2 model config (Recognizer3D)."""
    if args.arch == 'vit':
        backbone = dict(
            type=('ConvStemVisionTransformer' if args.stem == 'conv' else
                  'VisionTransformer'), img_size=64, patch_size=args.patch,
            embed_dims=args.embed, depth=args.depth, num_heads=args.heads,
            mlp_ratio=4, qkv_bias=True, num_frames=16,
            tubelet_size=args.tubelet, norm_cfg=dict(type='LN', eps=1e-6),
            drop_path_rate=args.drop_path,
            use_learnable_pos_emb=args.learnable_pos, use_mean_pooling=True)
        head = dict(type='TimeSformerHead', num_classes=4,
                    in_channels=args.embed, average_clips='prob')
    else:
        depths = [args.depth // 2, args.depth - args.depth // 2]
        backbone = dict(
            type='SwinTransformer3D', arch=dict(
                embed_dims=args.embed, depths=depths, num_heads=[
                    args.heads, 2 * args.heads]),
            pretrained=None, pretrained2d=False,
            patch_size=(args.tubelet, args.patch, args.patch),
            window_size=tuple(args.window),
            drop_path_rate=args.drop_path, out_indices=(1,))
        if args.stem == 'conv':
            backbone.update(type='ConvStemSwinTransformer3D',
                            stem_channels=tuple(args.stem_channels))
        head = dict(type='I3DHead', num_classes=4,
                    in_channels=2 * args.embed, spatial_type='avg',
                    dropout_ratio=0.0, init_std=0.02, average_clips='prob')
    return dict(
        type='Recognizer3D', backbone=backbone, cls_head=head,
        data_preprocessor=dict(type='ActionDataPreprocessor',
                               mean=[MEAN] * 3, std=[STD] * 3,
                               format_shape='NCTHW'))


def write_config(path: str, model_cfg: dict, args: argparse.Namespace
                 ) -> str:
    """A config for MMAction2's tools (benchmark data pipeline + model)."""
    from mmengine.config import Config
    body = (
        '# Pure video transformer of mmxai\'s localisation benchmark, '
        'written by\n# tools/benchmarks/train_benchmark_transformer.py '
        f'({" ".join(sys.argv[1:])})\n'
        "_base_ = ['%s']\n" % osp.relpath(
            osp.join(ROOT, 'configs/benchmark/_base_/synthetic_16x64.py'),
            osp.dirname(osp.abspath(path))))
    with open(path, 'w') as f:
        f.write(body + f'model = {model_cfg!r}\n')
    Config.fromfile(path)  # loads
    return path


def register_stem_models() -> None:
    """Register the conv-stem students in MMAction2's ``MODELS``:
    ``ConvStemVisionTransformer`` (:mod:`mmxai.models.conv_stem_vit`) and
    ``ConvStemSwinTransformer3D`` (:mod:`mmxai.models.conv_stem_swin`);
    importing them registers them."""
    import mmxai  # noqa: F401  (compat shims, before mmaction.models)
    import mmxai.models.conv_stem_swin  # noqa: F401
    import mmxai.models.conv_stem_vit  # noqa: F401


def build_student(model_cfg: dict):
    import logging
    import mmxai  # noqa: F401  (compat shims, before mmaction.models)
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules
    from mmengine.logging import MMLogger
    register_all_modules()
    register_stem_models()
    model = MODELS.build(model_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights' per-parameter report
    model.init_weights()
    logger.setLevel(level)
    return model


def load_teacher():
    from mmxai.apis import init_recognizer
    teacher = init_recognizer(osp.join(ROOT, TEACHER_CONFIG),
                              osp.join(ROOT, TEACHER_CKPT), device='cpu')
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def token_grid(model, x):
    """Student logits and its token grids ``[B, C, t, h, w]`` after each
    block (ViT) or each stage (Swin, before the patch merging); the last
    after the final norm."""
    bb = model.backbone
    if type(bb).__name__ == 'VisionTransformer':
        b, _, t, h, w = x.shape
        h, w = h // bb.patch_size, w // bb.patch_size
        z = bb.patch_embed(x)[0] + bb.pos_embed
        grids = []
        for blk in bb.blocks:
            z = blk(z)
            grids.append(z)
        z = bb.norm(z)
        grids[-1] = z
        feat = bb.fc_norm(z.mean(1))
        logits = model.cls_head(feat)
        c = z.shape[-1]
        return logits, [g.reshape(b, -1, h, w, c).permute(0, 4, 1, 2, 3)
                        for g in grids]
    # Swin: each stage's output (channel-last, before its patch merging)
    # read by hooks; the last is the backbone's normed output
    stages: List[object] = []
    handles = [layer.register_forward_hook(
        lambda mod, i, o: stages.append(o.permute(0, 4, 1, 2, 3)))
        for layer in bb.layers]
    try:
        feat = bb(x)
    finally:
        for h in handles:
            h.remove()
    feat = feat[-1] if isinstance(feat, (tuple, list)) else feat
    stages[-1] = feat
    return model.cls_head(feat), stages


def normalise(frames):
    """uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, H, W]`` as the
    data preprocessor (RGB, ``(x - 127.5) / 58``)."""
    import torch
    x = torch.as_tensor(frames).float().permute(0, 4, 1, 2, 3)
    return (x - MEAN) / STD


# ----------------------------------------------------------------- data ----

def draw_clips(n: int, seed: int, difficulty) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` clips (balanced labels, shuffled) of a difficulty: uint8
    ``[n, 16, 64, 64, 3]`` and labels ``[n]``."""
    from mmxai.datasets.synthetic import make_clip
    from mmxai.datasets.synthetic_benchmark import difficulty_cfg
    cfg = difficulty_cfg(difficulty)
    cfg.pop('fps', None)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    rng.shuffle(labels)
    frames = np.stack([make_clip(int(y), rng, **cfg)['frames']
                       for y in labels])
    return frames, labels.astype(np.int64)


def epoch_difficulty(epoch: int, args: argparse.Namespace):
    if not args.curriculum:
        return args.difficulty
    from mmxai.datasets.synthetic_benchmark import DIFFICULTIES
    final = (0.5 if args.difficulty == 'medium' else
             0.0 if args.difficulty == 'easy' else
             1.0 if args.difficulty == 'hard' else float(args.difficulty))
    assert DIFFICULTIES  # names above are the presets
    return min(final, final * epoch / max(1, args.curriculum - 1))


# ------------------------------------------------------------------ loss ----

def distill_loss(s, y, t_logits, zs, fs, adapters, args
                 ) -> Dict[str, 'object']:
    """The loss of the module docstring (one feature term per pair, their
    mean); returns its terms."""
    import torch
    import torch.nn.functional as F
    out = dict(ce=F.cross_entropy(s, y))
    total = (1 - args.alpha) * out['ce'] if args.alpha else out['ce']
    if args.alpha:
        tau = args.tau
        out['kd'] = F.kl_div(F.log_softmax(s / tau, 1),
                             F.softmax(t_logits / tau, 1),
                             reduction='batchmean') * tau * tau
        total = total + args.alpha * out['kd']
    if args.beta:
        feat = 0.0
        for z, f, adapter in zip(zs, fs, adapters):
            if z.shape[2:] != f.shape[2:]:  # pool both to the coarser grid
                size = tuple(min(a, b)
                             for a, b in zip(z.shape[2:], f.shape[2:]))
                z = F.adaptive_avg_pool3d(z, size)
                f = F.adaptive_avg_pool3d(f, size)
            pz = adapter(z)
            pz = F.layer_norm(pz.movedim(1, -1), pz.shape[1:2])
            tf = F.layer_norm(f.movedim(1, -1), f.shape[1:2])
            feat = feat + ((pz - tf) ** 2).mean()
        out['feat'] = feat / len(zs)
        total = total + args.beta * out['feat']
    out['loss'] = total
    return out


def lr_at(step: int, total: int, warm: int, base: float,
          time_frac: float = 0.0) -> float:
    """Linear warm-up then cosine to 1 % of ``base``; the cosine's progress
    is the larger of the step fraction and ``time_frac`` (the elapsed share
    of a time limit: the schedule ends when the time does)."""
    if step < warm:
        return base * (0.1 + 0.9 * step / max(1, warm))
    q = min(1.0, max((step - warm) / max(1, total - warm), time_frac))
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * q)))


def accuracy(model, frames: np.ndarray, labels: np.ndarray,
             batch: int = 50) -> float:
    import torch
    model.eval()
    hits = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            x = normalise(frames[i:i + batch])
            logits, _ = token_grid(model, x)
            hits += int((logits.argmax(1).numpy() == labels[i:i + batch]
                         ).sum())
    model.train()
    return hits / len(labels)


def test_accuracy(config: str, ckpt: str, root: str) -> Optional[float]:
    """Top-1 of the saved model on ``<root>/test.txt`` through MMAction2's
    test pipeline (decoded MP4s), as the benchmark loads it."""
    import torch
    from mmengine.dataset import Compose
    from mmxai.apis import init_recognizer
    ann = osp.join(ROOT, root, 'test.txt')
    if not osp.isfile(ann):
        return None
    register_stem_models()
    model = init_recognizer(config, ckpt, device='cpu')
    pipe = Compose(model.cfg.test_pipeline)
    hits = n = 0
    with open(ann) as f:
        rows = [ln.split() for ln in f if ln.strip()]
    for i in range(0, len(rows), 20):
        items = []
        for rel, lab in rows[i:i + 20]:
            items.append(pipe(dict(filename=osp.join(ROOT, root, rel),
                                   label=int(lab), start_index=0,
                                   modality='RGB')))
        data = dict(inputs=[d['inputs'] for d in items],
                    data_samples=[d['data_samples'] for d in items])
        with torch.no_grad():
            res = model.test_step(data)
        for r, (_, lab) in zip(res, rows[i:i + 20]):
            hits += int(int(r.pred_label.item()) == int(lab))
            n += 1
    return hits / n


# ----------------------------------------------------------------- train ----

def train(args: argparse.Namespace) -> dict:
    import torch
    import mmxai  # noqa: F401  (compat shims)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    name = args.name or f'{args.arch}_synthetic'
    model_cfg = student_model_cfg(args)
    model = build_student(model_cfg)
    if args.load_from:
        model.load_state_dict(torch.load(args.load_from, map_location='cpu',
                                         weights_only=True)['state_dict'])
    model.train()
    teacher = load_teacher() if (args.alpha or args.beta) else None
    pairs = [(-1 if a == 'last' else int(a), b)
             for a, b in (pr.split(':') for pr in args.pairs)]
    taps: Dict[str, object] = {}
    if teacher is not None:
        for _, layer in pairs:
            teacher.backbone.get_submodule(layer).register_forward_hook(
                lambda mod, i, o, k=layer: taps.__setitem__(k, o))
    with torch.no_grad():
        zs = token_grid(model, torch.zeros(1, 3, 16, 64, 64))[1]
        if teacher is not None:
            teacher.backbone(torch.zeros(1, 3, 16, 64, 64))
    adapters = torch.nn.ModuleList(
        torch.nn.Conv3d(zs[i].shape[1], taps[layer].shape[1], 1)
        for i, layer in pairs) if teacher is not None else []
    params = list(model.parameters()) + list(adapters.parameters() if
                                             teacher is not None else [])
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    steps_per_epoch = args.clips // args.batch
    total = steps_per_epoch * args.epochs
    warm = int(args.warmup * steps_per_epoch)
    val_x, val_y = draw_clips(args.val_clips, 10_000 + args.seed,
                              args.difficulty)
    log = []
    t0 = time.time()
    step = 0
    frames = labels = None
    stopped = False
    for epoch in range(args.epochs):
        diff = epoch_difficulty(epoch, args)
        n_new = args.clips if frames is None else int(args.fresh * args.clips)
        if n_new:
            nx, ny = draw_clips(n_new, 1000 * args.seed + epoch, diff)
            if frames is None or n_new == args.clips:
                frames, labels = nx, ny
            else:
                frames[:n_new], labels[:n_new] = nx, ny
        perm = np.random.default_rng(args.seed * 7919 + epoch).permutation(
            len(labels))
        sums: Dict[str, float] = {}
        for k in range(steps_per_epoch):
            idx = perm[k * args.batch:(k + 1) * args.batch]
            x = normalise(frames[idx])
            y = torch.as_tensor(labels[idx])
            t_logits = fs = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher.cls_head(teacher.backbone(x))
                fs = [taps[layer] for _, layer in pairs]
            s, grids = token_grid(model, x)
            terms = distill_loss(s, y, t_logits,
                                 [grids[i] for i, _ in pairs], fs, adapters,
                                 args)
            frac = ((time.time() - t0) / (60 * args.time_limit)
                    if args.time_limit else 0.0)
            for g in opt.param_groups:
                g['lr'] = lr_at(step, total, warm, args.lr, frac)
            opt.zero_grad()
            terms['loss'].backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + float(v)
            if args.time_limit and time.time() - t0 > 60 * args.time_limit:
                stopped = True
                break
        n = k + 1
        rec = dict(epoch=epoch + 1, difficulty=diff, steps=step,
                   lr=round(opt.param_groups[0]['lr'], 6),
                   seconds=round(time.time() - t0, 1),
                   **{key: round(v / n, 4) for key, v in sums.items()})
        if (epoch + 1) % args.eval_every == 0 or stopped or \
                epoch + 1 == args.epochs:
            rec['val_top1'] = accuracy(model, val_x, val_y)
        log.append(rec)
        print('[train_benchmark_transformer]', json.dumps(rec), flush=True)
        if stopped:
            break
    train_s = time.time() - t0
    ckpt = osp.join(args.out, f'{name}.pth')
    torch.save(dict(meta=dict(seed=args.seed, epoch=len(log),
                              args=vars(args)),
                    state_dict=model.state_dict()), ckpt)
    config = write_config(osp.join(args.out, f'{name}.py'), model_cfg, args)
    result = dict(name=name, args=vars(args), log=log,
                  train_seconds=round(train_s, 1), checkpoint=ckpt,
                  config=config, size_kb=round(osp.getsize(ckpt) / 1024),
                  params=int(sum(p.numel() for p in model.parameters())),
                  val_top1=log[-1].get('val_top1'))
    for root in args.test_roots:
        result[f'test_top1[{root}]'] = test_accuracy(config, ckpt, root)
    with open(osp.join(args.out, f'{name}.json'), 'w') as fh:
        json.dump(result, fh, indent=1)
    print('[train_benchmark_transformer] result',
          json.dumps({k: v for k, v in result.items()
                      if k not in ('log', 'args')}), flush=True)
    return result


def main() -> int:
    args = parse_args()
    os.chdir(ROOT)
    if args.eval:
        import torch
        torch.set_num_threads(args.threads)
        res = {root: test_accuracy(*args.eval, root)
               for root in args.test_roots}
        print('[train_benchmark_transformer] test_top1', json.dumps(res))
        return 0
    train(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
