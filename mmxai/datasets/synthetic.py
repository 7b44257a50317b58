"""A synthetic video action dataset whose class evidence lies in a known region.

Each clip shows ``1 + num_distractors`` identical-looking objects on a textured,
noisy background. One of them moves in a class-specific direction during a
random window of frames (``active_frames``) and stands still before and after;
the distractors never move. A single frame therefore carries no class
information: only the motion does. The ground-truth evidence mask marks the
moving object's pixels in the frames where it moves.

Classes: ``0`` left-to-right, ``1`` right-to-left, ``2`` top-to-bottom,
``3`` bottom-to-top (see :data:`CLASSES`).

On disk (:func:`generate_dataset`)::

    <out_dir>/<split>.txt                   "<split>/<name>.mp4 <label>" per line
    <out_dir>/<split>/<name>.mp4             RGB video ('mp4v')
    <out_dir>/<split>/<name>.npz             mask [T, H, W] bool, active_frames, label
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

#: Class names, indexed by label: the moving object's direction.
CLASSES = ['left_to_right', 'right_to_left', 'top_to_bottom', 'bottom_to_top']

#: Default clip settings (keyword arguments of :func:`make_clip`).
DEFAULT_CFG = dict(
    num_frames=32,
    size=64,
    obj_size=None,          # side of the square object; None: size // 6
    num_distractors=2,
    noise=8.0,              # std of per-frame Gaussian pixel noise (0-255 scale)
    texture=40.0,           # amplitude of the static background texture
    active_range=(0.4, 0.6),  # active window length, as fractions of num_frames
    travel_range=(0.4, 0.7),  # distance travelled, as fractions of size
    fps=16,
)

_DIRECTIONS = {0: (1, 0), 1: (-1, 0), 2: (0, 1), 3: (0, -1)}  # (dx, dy)


def _texture(rng: np.random.Generator, size: int, amplitude: float) -> np.ndarray:
    """A smooth random colour texture ``[size, size, 3]`` float32 around grey."""
    base = rng.uniform(60, 140, size=3).astype(np.float32)
    coarse = rng.normal(0, 1, size=(max(2, size // 8), max(2, size // 8), 3))
    smooth = cv2.resize(coarse.astype(np.float32), (size, size),
                        interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 0.35, size=(size, size, 3)).astype(np.float32)
    return base[None, None] + amplitude * 0.5 * (smooth + fine)


def _sprite(rng: np.random.Generator, obj: int) -> Tuple[np.ndarray, np.ndarray]:
    """Object appearance: colour ``[obj, obj, 3]`` float32 and shape ``[obj, obj]`` bool.

    A bright disc with a dark cross through it, so that it has edges and texture.
    """
    yy, xx = np.mgrid[:obj, :obj].astype(np.float32) - (obj - 1) / 2
    shape = (xx ** 2 + yy ** 2) <= (obj / 2) ** 2 + 0.5
    colour = rng.uniform(170, 255, size=3).astype(np.float32)
    colour[rng.integers(3)] = rng.uniform(0, 60)  # saturated: stands out
    img = np.broadcast_to(colour, (obj, obj, 3)).copy()
    w = max(1, obj // 6)
    c = obj // 2
    img[c - w // 2:c - w // 2 + w, :] *= 0.35
    img[:, c - w // 2:c - w // 2 + w] *= 0.35
    return img, shape


def _overlaps(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int],
              margin: int) -> bool:
    """Whether boxes ``(x0, y0, x1, y1)`` overlap, with ``margin`` pixels."""
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def make_clip(label: int, rng: np.random.Generator, **cfg) -> dict:
    """Draw one clip of class ``label``.

    Args:
        label: class index in ``range(len(CLASSES))``.
        rng: numpy random generator (the only source of randomness).
        **cfg: overrides of :data:`DEFAULT_CFG` (``num_frames``, ``size``,
            ``obj_size``, ``num_distractors``, ``noise``, ``texture``,
            ``active_range``, ``travel_range``; ``fps`` is ignored here).

    Returns:
        dict with ``frames`` uint8 ``[T, H, W, 3]`` (RGB), ``mask`` bool
        ``[T, H, W]`` (moving object's pixels in the active frames),
        ``label`` int and ``active_frames`` int64 ``[A]`` (sorted frame
        indices in which the object moves).
    """
    unknown = set(cfg) - set(DEFAULT_CFG)
    if unknown:
        raise ValueError(f'unknown synthetic clip settings: {sorted(unknown)}')
    if label not in _DIRECTIONS:
        raise ValueError(f'label must be in 0..{len(CLASSES) - 1}, got {label}')
    c = {**DEFAULT_CFG, **cfg}
    T, S = int(c['num_frames']), int(c['size'])
    obj = int(c['obj_size'] or max(3, S // 6))
    if T < 2 or S < 2 * obj + 4:
        raise ValueError(f'clip too small: num_frames={T}, size={S}, obj_size={obj}')

    # Active window [start, stop): the object moves in each of these frames.
    lo, hi = c['active_range']
    n_active = int(rng.integers(max(1, round(lo * T)), max(1, round(hi * T)) + 1))
    n_active = min(n_active, T - 1)
    start = int(rng.integers(1, T - n_active + 1))
    stop = start + n_active

    # Path: travel along the class direction, perpendicular coordinate fixed.
    free = S - obj  # top-left coordinate range [0, free]
    lo, hi = c['travel_range']
    travel = int(rng.integers(max(1, round(lo * free)), max(1, round(hi * free)) + 1))
    travel = min(travel, free)
    dx, dy = _DIRECTIONS[label]
    along0 = int(rng.integers(0, free - travel + 1))
    across = int(rng.integers(0, free + 1))
    if dx:  # horizontal
        x_start = along0 if dx > 0 else along0 + travel
        p0, p1 = np.array([x_start, across]), np.array([x_start + dx * travel, across])
    else:
        y_start = along0 if dy > 0 else along0 + travel
        p0, p1 = np.array([across, y_start]), np.array([across, y_start + dy * travel])
    frac = np.clip((np.arange(T) - start + 1) / n_active, 0.0, 1.0)
    path = np.rint(p0[None] + frac[:, None] * (p1 - p0)[None]).astype(int)  # [T, 2]

    # Distractors: static, away from the swept box of the moving object.
    swept = (int(path[:, 0].min()), int(path[:, 1].min()),
             int(path[:, 0].max()) + obj, int(path[:, 1].max()) + obj)
    boxes, static = [swept], []
    for _ in range(int(c['num_distractors'])):
        for attempt in range(200):
            x, y = (int(v) for v in rng.integers(0, free + 1, size=2))
            box = (x, y, x + obj, y + obj)
            if not any(_overlaps(box, b, 2) for b in boxes) or attempt == 199:
                break
        boxes.append(box)
        static.append((x, y))

    sprite, shape = _sprite(rng, obj)
    background = _texture(rng, S, float(c['texture']))
    frames = np.empty((T, S, S, 3), np.uint8)
    mask = np.zeros((T, S, S), bool)
    active = np.arange(start, stop, dtype=np.int64)
    for t in range(T):
        img = background.copy()
        for x, y in static + [tuple(path[t])]:  # mover drawn last (on top)
            region = img[y:y + obj, x:x + obj]
            region[shape] = sprite[shape]
        if c['noise'] > 0:
            img += rng.normal(0, c['noise'], size=img.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if start <= t < stop:
            x, y = path[t]
            mask[t, y:y + obj, x:x + obj] = shape
    return dict(frames=frames, mask=mask, label=int(label), active_frames=active)


def write_video(path: str, frames: np.ndarray, fps: int = 16) -> str:
    """Write RGB ``frames`` uint8 ``[T, H, W, 3]`` as an 'mp4v' MP4 at
    ``path`` (atomically, via :func:`mmxai.visualization.write_video`)."""
    from ..visualization.video_writer import write_video as _write_video
    return _write_video(path, frames, fps=fps)


def save_clip(clip: dict, video_path: str, fps: int = 16) -> str:
    """Write a :func:`make_clip` result: the MP4 and its ``.npz`` mask; return the mask path."""
    write_video(video_path, clip['frames'], fps=fps)
    mask_path = osp.splitext(video_path)[0] + '.npz'
    np.savez_compressed(mask_path, mask=clip['mask'],
                        active_frames=clip['active_frames'],
                        label=np.int64(clip['label']))
    return mask_path


def generate_dataset(out_dir: str, num_per_class: int, split: str = 'train',
                     seed: int = 0, check_decode: bool = True, **cfg) -> str:
    """Write ``num_per_class`` clips per class for ``split``; return the annotation file.

    Args:
        out_dir: dataset root; videos and masks go to ``<out_dir>/<split>/``.
        num_per_class: clips per class.
        split: split name (also the annotation file's stem).
        seed: seed of the numpy generator (same seed, same dataset).
        check_decode: read each video back with decord and check its frame count.
        **cfg: clip settings, see :func:`make_clip` (plus ``fps``).

    Returns:
        Path of ``<out_dir>/<split>.txt`` ("<split>/<name>.mp4 <label>" lines,
        relative to ``out_dir``: use ``data_prefix=dict(video=out_dir)``).
    """
    if num_per_class < 1:
        raise ValueError(f'num_per_class must be >= 1, got {num_per_class}')
    fps = int(cfg.get('fps', DEFAULT_CFG['fps']))
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    labels = np.repeat(np.arange(len(CLASSES)), num_per_class)
    rng.shuffle(labels)
    lines = []
    for i, label in enumerate(labels):
        clip = make_clip(int(label), rng, **cfg)
        rel = f'{split}/{split}_{i:05d}.mp4'
        path = osp.join(out_dir, rel)
        save_clip(clip, path, fps=fps)
        if check_decode:
            n = count_frames(path)
            if n != len(clip['frames']):
                raise OSError(f'{path}: decord reads {n} frames, '
                              f'wrote {len(clip["frames"])}')
        lines.append(f'{rel} {int(label)}')
    ann_file = osp.join(out_dir, f'{split}.txt')
    with open(ann_file, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return ann_file


def count_frames(path: str) -> int:
    """Number of frames decord reads from the video at ``path``."""
    import decord
    return len(decord.VideoReader(path))


def load_gt(mask_path: str) -> dict:
    """Read a ground-truth ``.npz``: ``mask`` bool ``[T, H, W]``, ``active_frames``, ``label``."""
    with np.load(mask_path) as z:
        return dict(mask=z['mask'].astype(bool),
                    active_frames=z['active_frames'].astype(np.int64),
                    label=int(z['label']))


def read_video(path: str, frame_inds: Optional[Sequence[int]] = None) -> np.ndarray:
    """Decode a video with decord: RGB uint8 ``[T, H, W, 3]`` (all or ``frame_inds``)."""
    import decord
    vr = decord.VideoReader(path)
    inds = list(range(len(vr))) if frame_inds is None else list(frame_inds)
    return vr.get_batch(inds).asnumpy()
