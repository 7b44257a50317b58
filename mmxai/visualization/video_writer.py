"""MP4 (OpenCV) and GIF (Pillow) writers; every file is written atomically."""
from __future__ import annotations

import os
from typing import Any, Optional

import cv2
import numpy as np

from mmxai.errors import InputError, OutputError
from mmxai.fileio import PathLike, atomic_path

from .colormap import as_rgb_frames


def _video_frames(frames: Any) -> np.ndarray:
    f = as_rgb_frames(frames)
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got shape {tuple(f.shape)}')
    if f.shape[0] == 0 or f.shape[1] == 0 or f.shape[2] == 0:
        raise InputError(f'cannot write an empty video (frames shape {tuple(f.shape)})')
    return f


def write_video(path: PathLike, frames: Any, fps: float = 25, codec: str = 'mp4v') -> str:
    """Write RGB frames to an MP4 with ``cv2.VideoWriter``.

    Args:
        path: output file (``.mp4``); its folder is created if needed.
        frames: uint8 RGB ``[T, H, W, 3]``.
        fps: frames per second.
        codec: FourCC; ``'mp4v'`` is available in every OpenCV wheel.

    Odd heights/widths are padded by one replicated row/column (``mp4v`` and
    most players need even sizes), so the file is ``[T, H + H % 2, W + W % 2]``.
    decord 0.6.0 cannot decode a few tiny widths (16, 24, 48, 72 px: a size
    check fails in ``get_batch``) although the files are valid; OpenCV reads them.

    Returns:
        ``path`` as a string.
    """
    f = _video_frames(frames)
    if not fps or fps <= 0:
        raise InputError(f'fps must be positive, got {fps}')
    T, H, W = f.shape[:3]
    ph, pw = H % 2, W % 2
    if ph or pw:
        f = np.pad(f, ((0, 0), (0, ph), (0, pw), (0, 0)), mode='edge')
        H, W = H + ph, W + pw
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*codec), float(fps), (W, H))
        if not writer.isOpened():
            raise OutputError(f'OpenCV cannot open a {codec!r} video writer for {path}')
        try:
            for frame in f:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        if os.path.getsize(tmp) == 0:
            raise OutputError(f'OpenCV wrote an empty video for {path} (codec {codec!r})')
    return path


def write_gif(path: PathLike, frames: Any, fps: float = 10, max_size: Optional[int] = None,
              loop: int = 0) -> str:
    """Write RGB frames to a looping GIF with Pillow.

    Args:
        path: output file; its folder is created if needed.
        frames: uint8 RGB ``[T, H, W, 3]``.
        fps: frames per second (GIF stores delays in 10 ms steps).
        max_size: if given, frames are shrunk (area interpolation, aspect kept)
            so that their longer side is at most this many pixels.
        loop: 0 = loop forever, n = play n + 1 times.

    Note: Pillow merges identical consecutive frames into one with the summed
    delay, so a GIF of repeated frames reads back with fewer frames but the same
    duration.

    Returns:
        ``path`` as a string.
    """
    from PIL import Image

    f = _video_frames(frames)
    if not fps or fps <= 0:
        raise InputError(f'fps must be positive, got {fps}')
    H, W = f.shape[1:3]
    if max_size is not None and max(H, W) > int(max_size):
        s = int(max_size) / max(H, W)
        size = (max(1, int(round(W * s))), max(1, int(round(H * s))))
        f = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in f])
    # fast octree: ~100x faster than median cut at a similar error on overlays
    images = [Image.fromarray(x, 'RGB').quantize(colors=256, method=Image.Quantize.FASTOCTREE)
              for x in f]
    duration = max(20, int(round(1000.0 / fps)))  # browsers treat < 20 ms as 100 ms
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format='GIF', save_all=True, append_images=images[1:],
                       duration=duration, loop=int(loop), optimize=False)
    return path
