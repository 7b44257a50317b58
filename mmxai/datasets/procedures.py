"""Synthetic surgical procedures with known evidence, in Cholec80's layout.

A procedure is a sequence of the 7 Cholec80 phases (in order, with relative
durations like Cholec80's, the first and sixth phase sometimes skipped and
the last two sometimes alternating, as in real cholecystectomies). Each
phase is marked by its own instrument: a shape and colour (``TOOL_LOOKS``)
that moves in its own way (``TOOL_MOTIONS``) inside its own region of a
textured "tissue" background that drifts slowly. Distractors are the
instruments of *other* phases lying still in the wrong region, so a sprite's
appearance alone does not give the phase: where it is and that it moves do.

Per frame the generator knows the phase, each instrument's mask (the
phase-defining one: ``phase_mask``) and the tool presence (column ``t`` is
instrument ``t``; a distractor counts as present). :func:`write_procedure`
writes ``videoNN.mp4``, ``videoNN-phase.txt`` (25 fps numbering, one line per
frame of a 25 fps time line), ``videoNN-tool.txt`` (1 fps) and
``videoNN-masks.npz`` (``phase_mask`` bool ``[T, H, W]``, ``phase``
``[T]``), so the benchmark reads procedures through the real-format reader.
"""
import os
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np

from .phase_labels import (CHOLEC80_FPS, CHOLEC80_PHASES, write_phase_file,
                           write_tool_file)

#: Relative mean durations of Cholec80's phases (Twinanda et al. 2017,
#: table of phase statistics, rounded): dissection phases dominate.
CHOLEC80_DURATIONS = (0.05, 0.35, 0.07, 0.30, 0.08, 0.09, 0.06)
#: (shape, RGB colour) of each phase's instrument.
TOOL_LOOKS = (('disc', (230, 230, 60)), ('bar', (60, 220, 230)),
              ('square', (240, 120, 40)), ('triangle', (80, 230, 80)),
              ('ring', (240, 240, 240)), ('cross', (60, 90, 240)),
              ('diamond', (230, 60, 200)))
#: How each phase's instrument moves: (axis, frequency in Hz).
TOOL_MOTIONS = (('h', 0.5), ('v', 0.7), ('circle', 0.4), ('h', 1.0),
                ('v', 0.4), ('circle', 0.8), ('diag', 0.6))


def _region_centres(size: int):
    """Seven region centres on a ring around the image centre."""
    ang = np.linspace(0, 2 * np.pi, 8)[:-1] + 0.3
    r = 0.30 * size
    return [(size / 2 + r * np.cos(a), size / 2 + r * np.sin(a)) for a in ang]


def _shape_mask(shape: str, s: int) -> np.ndarray:
    yy, xx = np.mgrid[:s, :s].astype(np.float32) - (s - 1) / 2
    r = s / 2
    if shape == 'disc':
        return xx ** 2 + yy ** 2 <= r ** 2
    if shape == 'ring':
        d = xx ** 2 + yy ** 2
        return (d <= r ** 2) & (d >= (0.5 * r) ** 2)
    if shape == 'square':
        return np.ones((s, s), bool)
    if shape == 'bar':
        return np.abs(yy) <= r * 0.35
    if shape == 'triangle':
        return (yy >= -r) & (np.abs(xx) <= (yy + r) / 2)
    if shape == 'cross':
        return (np.abs(xx) <= r * 0.3) | (np.abs(yy) <= r * 0.3)
    return np.abs(xx) + np.abs(yy) <= r  # diamond


def phase_sequence(rng: np.random.Generator, duration_s: float,
                   min_phase_s: float = 6.0):
    """``[(phase, seconds), ...]`` of one procedure."""
    order = list(range(7))
    if rng.random() < 0.15:
        order.remove(0)
    if rng.random() < 0.15:
        order.remove(5)
    if 5 in order and rng.random() < 0.3:  # cleaning <-> retraction
        order = order + [5, 6]
    w = np.array([CHOLEC80_DURATIONS[p] for p in order], np.float64)
    w = np.sqrt(w) * rng.uniform(0.7, 1.3, len(w))  # less extreme, varied
    secs = np.maximum(min_phase_s, w / w.sum() * duration_s)
    secs *= duration_s / secs.sum()
    return list(zip(order, secs))


def make_procedure(rng: np.random.Generator, duration_s: float = 120.0,
                   fps: float = 5.0, size: int = 64,
                   num_distractors: int = 2, noise: float = 6.0) -> dict:
    """One procedure: ``frames`` uint8 ``[T, S, S, 3]``, ``phase`` ``[T]``,
    ``tools`` ``[T, 7]``, ``phase_mask`` bool ``[T, S, S]`` (the
    phase-defining instrument), ``distractor_mask``, ``fps``."""
    seq = phase_sequence(rng, duration_s)
    bounds = np.round(np.cumsum([0] + [s for _, s in seq]) * fps).astype(int)
    T = int(bounds[-1])
    phase = np.zeros(T, np.int64)
    for (p, _), a, b in zip(seq, bounds[:-1], bounds[1:]):
        phase[a:b] = p
    pad = size // 4
    big = size + 2 * pad
    base = rng.uniform(110, 160, 3).astype(np.float32)
    coarse = rng.normal(0, 1, (big // 6, big // 6, 3)).astype(np.float32)
    tissue = base + 30 * cv2.resize(coarse, (big, big),
                                    interpolation=cv2.INTER_CUBIC)
    tissue[..., 0] += 40  # reddish
    centres = _region_centres(size)
    obj = max(6, size // 7)
    masks = [_shape_mask(s, obj) for s, _ in TOOL_LOOKS]
    frames = np.zeros((T, size, size, 3), np.uint8)
    tools = np.zeros((T, 7), np.uint8)
    pmask = np.zeros((T, size, size), bool)
    dmask = np.zeros((T, size, size), bool)
    # distractors: per phase segment, instruments of other phases lying
    # still somewhere outside their own region
    distract = []
    for (p, _), a, b in zip(seq, bounds[:-1], bounds[1:]):
        others = [q for q in range(7) if q != p]
        picks = rng.choice(others, size=num_distractors, replace=False)
        for q in picks:
            spots = [c for i, c in enumerate(centres) if i not in (p, q)]
            cx, cy = spots[rng.integers(len(spots))]
            s0 = int(a + rng.uniform(0, 0.3) * (b - a))
            s1 = int(b - rng.uniform(0, 0.3) * (b - a))
            distract.append((int(q), s0, s1, cx, cy))
    for t in range(T):
        ox = int(pad + 0.6 * pad * np.sin(2 * np.pi * t / fps / 37.0))
        oy = int(pad + 0.6 * pad * np.cos(2 * np.pi * t / fps / 29.0))
        img = tissue[oy:oy + size, ox:ox + size].copy()
        p = int(phase[t])
        sec = t / fps
        axis, freq = TOOL_MOTIONS[p]
        amp = 0.09 * size
        ph = 2 * np.pi * freq * sec
        dx, dy = {'h': (np.sin(ph), 0), 'v': (0, np.sin(ph)),
                  'circle': (np.cos(ph), np.sin(ph)),
                  'diag': (np.sin(ph), np.sin(ph))}[axis]
        cx, cy = centres[p]
        items = [(p, cx + amp * dx, cy + amp * dy, pmask)]
        for q, s0, s1, qx, qy in distract:
            if s0 <= t < s1:
                items.append((q, qx, qy, dmask))
        for q, x, y, mk in items:
            x0, y0 = int(round(x - obj / 2)), int(round(y - obj / 2))
            x0, y0 = min(max(x0, 0), size - obj), min(max(y0, 0), size - obj)
            m = masks[q]
            region = img[y0:y0 + obj, x0:x0 + obj]
            region[m] = TOOL_LOOKS[q][1]
            mk[t, y0:y0 + obj, x0:x0 + obj] |= m
            tools[t, q] = 1
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    dmask &= ~pmask
    return dict(frames=frames, phase=phase, tools=tools, phase_mask=pmask,
                distractor_mask=dmask, fps=fps, sequence=seq)


def write_procedure(root: str, number: int, proc: dict,
                    layout: str = 'cholec80') -> dict:
    """Write one procedure in Cholec80's layout under ``root``
    (``videos/``, ``phase_annotations/``, ``tool_annotations/``, masks in
    ``masks/``; ``layout='flat'``: all in ``root``). Returns the paths."""
    from ..visualization.video_writer import write_video
    sub = dict(video='videos', phase='phase_annotations',
               tool='tool_annotations', mask='masks')
    if layout == 'flat':
        sub = {k: '' for k in sub}
    name = f'video{number:02d}'
    for d in sub.values():
        os.makedirs(osp.join(root, d), exist_ok=True)
    fps = proc['fps']
    paths = dict(
        video=osp.join(root, sub['video'], name + '.mp4'),
        phase=osp.join(root, sub['phase'], name + '-phase.txt'),
        tool=osp.join(root, sub['tool'], name + '-tool.txt'),
        mask=osp.join(root, sub['mask'], name + '-masks.npz'))
    write_video(paths['video'], proc['frames'], fps=fps)
    # phase file: one line per frame of the 25 fps time line, as Cholec80
    n25 = int(round(len(proc['phase']) / fps * CHOLEC80_FPS))
    src = np.minimum((np.arange(n25) / CHOLEC80_FPS * fps).astype(int),
                     len(proc['phase']) - 1)
    write_phase_file(paths['phase'], proc['phase'][src], CHOLEC80_PHASES)
    write_tool_file(paths['tool'], proc['tools'], fps=fps)
    np.savez_compressed(paths['mask'], phase_mask=proc['phase_mask'],
                        distractor_mask=proc['distractor_mask'],
                        phase=proc['phase'], fps=np.float64(fps))
    return paths


def generate_procedures(root: str, numbers: Sequence[int], seed: int = 0,
                        duration_s: float = 120.0, fps: float = 5.0,
                        size: int = 64, layout: str = 'cholec80',
                        duration_jitter: Optional[float] = 0.25, **kw
                        ) -> list:
    """Write procedures ``numbers`` (``videoNN``) under ``root``; each has
    its own generator seeded from ``(seed, number)``."""
    out = []
    for n in numbers:
        rng = np.random.default_rng([seed, int(n)])
        d = duration_s * (1 + rng.uniform(-1, 1) * (duration_jitter or 0))
        proc = make_procedure(rng, d, fps=fps, size=size, **kw)
        out.append(write_procedure(root, int(n), proc, layout))
    return out
