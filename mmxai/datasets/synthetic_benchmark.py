"""The spatio-temporal localisation benchmark's data: the synthetic action
dataset of :mod:`mmxai.datasets.synthetic` with a difficulty knob.

Evidence: the one moving disc in its active frames (``mask`` ``[T, H, W]``,
``active_frames``); distractors are identical discs that never move, so they
carry no class information. Difficulty presets change the number of
distractors, the pixel noise, the background texture and how long / how far
the disc moves. Clips default to 16 frames of 64x64 (the benchmark models'
input: no temporal or spatial resampling, so masks map one to one).

The clips are read by the registered :class:`SyntheticVideoDataset`
(``type='mmxai.SyntheticVideoDataset'``), so MMAction2's own train/test
tools use them unchanged.
"""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import numpy as np

from .synthetic import CLASSES, generate_dataset

#: Settings of :func:`mmxai.datasets.synthetic.make_clip` per difficulty.
DIFFICULTIES: Dict[str, dict] = {
    'easy': dict(num_distractors=1, noise=4.0, texture=25.0,
                 active_range=(0.5, 0.7), travel_range=(0.5, 0.8)),
    'medium': dict(num_distractors=2, noise=8.0, texture=40.0,
                   active_range=(0.4, 0.6), travel_range=(0.4, 0.7)),
    'hard': dict(num_distractors=4, noise=16.0, texture=60.0,
                 active_range=(0.3, 0.5), travel_range=(0.3, 0.5)),
}

#: Benchmark clip geometry: 16 frames of 64x64 at 16 fps.
BENCHMARK_CLIP = dict(num_frames=16, size=64, fps=16)

#: Split sizes (clips per class) and seeds of the benchmark data.
BENCHMARK_SPLITS = dict(train=(150, 100), val=(25, 101), test=(50, 102))


def difficulty_cfg(difficulty: Union[str, float] = 'medium', **overrides
                   ) -> dict:
    """Clip settings for a difficulty: a preset name or a number in [0, 1]
    (0 = 'easy', 0.5 = 'medium', 1 = 'hard', linearly in between; the
    distractor count is rounded). ``overrides`` win.
    """
    if isinstance(difficulty, str):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty '{difficulty}': use one of "
                             f'{", ".join(DIFFICULTIES)} or a number in [0, 1]')
        cfg = dict(DIFFICULTIES[difficulty])
    else:
        d = float(difficulty)
        if not 0.0 <= d <= 1.0:
            raise ValueError(f'difficulty must be in [0, 1], got {d}')
        lo, hi, w = (('easy', 'medium', d / 0.5) if d <= 0.5 else
                     ('medium', 'hard', (d - 0.5) / 0.5))
        a, b = DIFFICULTIES[lo], DIFFICULTIES[hi]
        cfg = {}
        for k in a:
            va, vb = np.asarray(a[k], float), np.asarray(b[k], float)
            v = va + w * (vb - va)
            cfg[k] = tuple(float(x) for x in v) if v.ndim else float(v)
        cfg['num_distractors'] = int(round(cfg['num_distractors']))
    cfg = {**BENCHMARK_CLIP, **cfg}
    cfg.update(overrides)
    return cfg


def generate_benchmark_dataset(out_dir: str,
                               difficulty: Union[str, float] = 'medium',
                               splits: Optional[Sequence[str]] = None,
                               sizes: Optional[Dict[str, tuple]] = None,
                               overwrite: bool = False, **overrides
                               ) -> Dict[str, str]:
    """Write the benchmark splits under ``out_dir``; return split -> ann file.

    Args:
        out_dir: dataset root (``<out_dir>/<split>.txt``, videos, ``.npz``).
        difficulty: see :func:`difficulty_cfg`.
        splits: which of ``train``/``val``/``test`` (default: all).
        sizes: ``split -> (clips per class, seed)`` (default
            :data:`BENCHMARK_SPLITS`).
        overwrite: rewrite a split whose annotation file already exists
            (otherwise it is kept: same seed, same data).
        **overrides: clip settings (see :func:`make_clip`).
    """
    sizes = dict(BENCHMARK_SPLITS, **(sizes or {}))
    cfg = difficulty_cfg(difficulty, **overrides)
    out = {}
    for split in splits or ('train', 'val', 'test'):
        if split not in sizes:
            raise ValueError(f"unknown split '{split}': {', '.join(sizes)}")
        n, seed = sizes[split]
        ann = osp.join(out_dir, f'{split}.txt')
        if overwrite or not _complete(ann, n * len(CLASSES)):
            ann = generate_dataset(out_dir, n, split=split, seed=seed,
                                   check_decode=False, **cfg)
        out[split] = ann
    return out


def _complete(ann: str, expected: int) -> bool:
    """Whether ``ann`` lists ``expected`` clips whose files all exist."""
    if not osp.isfile(ann):
        return False
    root = osp.dirname(ann)
    with open(ann) as f:
        rows = [line.split()[0] for line in f if line.strip()]
    return len(rows) == expected and all(
        osp.isfile(osp.join(root, r)) and
        osp.isfile(osp.join(root, osp.splitext(r)[0] + '.npz')) for r in rows)


__all__ = ['DIFFICULTIES', 'BENCHMARK_CLIP', 'BENCHMARK_SPLITS',
           'difficulty_cfg', 'generate_benchmark_dataset']
