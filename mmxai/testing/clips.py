"""The one toy-clip writer of the tests: a bright square moving on noise.

(The benchmark and demo data with known evidence regions are a feature of
their own: :func:`mmxai.datasets.synthetic.make_clip`.)
"""
import os
from typing import Optional, Tuple

import numpy as np

__all__ = ['DIRECTIONS', 'write_toy_clip']

#: ``(dy, dx)`` of the square per class (``label % 4``).
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def write_toy_clip(path, frames: int = 12, height: int = 40,
                   width: int = 40, seed: int = 0, fps: int = 8,
                   label: Optional[int] = None, square: int = 8,
                   start: Optional[Tuple[int, int]] = None,
                   jitter: int = 3, speed: Tuple[int, int] = (1, 2),
                   wrap: Optional[int] = None) -> np.ndarray:
    """Write an MP4 (``mp4v``, decord-readable) of a ``square`` px bright
    square (230) on dark noise (0-59) and return its mask ``[T, H, W]``.

    The square's top-left corner at frame ``t`` is
    ``start + d * (t * speed[0] // speed[1])`` with ``d = DIRECTIONS[label %
    4]`` (``label=None``: rightwards), each offset taken modulo ``wrap`` if
    given; ``start`` (default: the centre) is jittered by up to ``jitter``
    px, drawn first from ``np.random.default_rng(seed)``.
    """
    import cv2
    rng = np.random.default_rng(seed)
    dy, dx = DIRECTIONS[(label or 0) % 4]
    y, x = start if start is not None else (
        (height - square) // 2 - 2, (width - square) // 2 - 2)
    if jitter:
        y += int(rng.integers(-jitter, jitter + 1))
        x += int(rng.integers(-jitter, jitter + 1))
    mask = np.zeros((frames, height, width), bool)
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter_fourcc(*'mp4v'),
                             fps, (width, height))
    try:
        for t in range(frames):
            img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
            oy = dy * t * speed[0] // speed[1]
            ox = dx * t * speed[0] // speed[1]
            if wrap:
                oy, ox = oy % wrap, ox % wrap
            yy, xx = y + oy, x + ox
            img[yy:yy + square, xx:xx + square] = 230
            mask[t, yy:yy + square, xx:xx + square] = True
            writer.write(img)
    finally:
        writer.release()
    return mask
