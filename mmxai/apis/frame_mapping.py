"""Map explanation maps ``[V, T, H, W]`` back onto the original frames."""
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .video_input import CropRegion


def view_frame_indices(num_views: int, frames_per_view: int,
                       frame_inds: np.ndarray) -> np.ndarray:
    """``[V, T]`` original frame index of every map frame.

    Views are laid out crops outermost, then clips (as ``FormatShape``
    does): map frame ``p = v*T + t`` is ``frame_inds[p % len(frame_inds)]``.
    """
    n = max(1, len(frame_inds))
    pos = np.arange(num_views * frames_per_view).reshape(num_views,
                                                         frames_per_view)
    if len(frame_inds) == 0:
        return pos
    return np.asarray(frame_inds)[pos % n]


def view_crop_index(num_views: int, frames_per_view: int,
                    num_frame_inds: int, num_crops: int) -> np.ndarray:
    """``[V]`` spatial crop of the first frame of each view (see
    :func:`position_crop_index` for every frame)."""
    return position_crop_index(num_views, frames_per_view, num_frame_inds,
                               num_crops)[:, 0]


def position_crop_index(num_views: int, frames_per_view: int,
                        num_frame_inds: int, num_crops: int) -> np.ndarray:
    """``[V, T]`` spatial crop every map frame comes from.

    Model inputs are ``crops x frame_inds`` frames, crops outermost, however
    they are grouped into views: map frame ``p = v*T + t`` lies in crop
    ``p // len(frame_inds)``. A view may so span several crops (a 2D
    recognizer told to take the whole stack as one view).
    """
    per_crop = max(1, num_frame_inds)
    pos = np.arange(num_views * frames_per_view).reshape(num_views,
                                                         frames_per_view)
    return np.minimum(pos // per_crop, max(0, num_crops - 1))


def maps_to_original(maps: np.ndarray, frame_inds: np.ndarray,
                     crops: List[CropRegion], original_shape: Tuple[int, int],
                     out_shape: Tuple[int, int] = None
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste maps of every view onto the original frames they came from.

    Args:
        maps: ``[V, T, H, W]`` maps at the model's input resolution.
        frame_inds: original frame indices sampled by the pipeline.
        crops: where each spatial crop lies in the original frame, in the
            order of the model input (crops outermost); map frame
            ``p = v*T + t`` is crop ``p // len(frame_inds)``, original frame
            ``frame_inds[p % len(frame_inds)]``, whatever the grouping into
            views (see :func:`position_crop_index`).
        original_shape: ``(H0, W0)`` of the decoded video.
        out_shape: ``(H, W)`` to render at (default: original).
    Returns:
        ``(indices [N], maps [N, H, W], valid [N, H, W] bool)`` for the N
        distinct original frames covered; where several views cover a pixel
        their maps are averaged; ``valid`` is False where no view looked.
    """
    v, t = maps.shape[:2]
    h0, w0 = original_shape
    oh, ow = out_shape or (h0, w0)
    sy, sx = oh / h0, ow / w0
    crops = crops or [CropRegion((0., 0., float(w0), float(h0)))]
    idx = view_frame_indices(v, t, frame_inds)
    crop_of = position_crop_index(v, t, len(frame_inds), len(crops))
    acc: Dict[int, np.ndarray] = {}
    cnt: Dict[int, np.ndarray] = {}
    for vi in range(v):
        for ti in range(t):
            region = crops[int(crop_of[vi, ti])]
            x1, y1, x2, y2 = region.box
            c1, r1 = int(round(x1 * sx)), int(round(y1 * sy))
            c2, r2 = int(round(x2 * sx)), int(round(y2 * sy))
            c1, r1 = max(c1, 0), max(r1, 0)
            c2, r2 = min(max(c2, c1 + 1), ow), min(max(r2, r1 + 1), oh)
            m = maps[vi, ti].astype(np.float32)
            if region.flip:
                m = m[:, ::-1]
            patch = cv2.resize(np.ascontiguousarray(m), (c2 - c1, r2 - r1),
                               interpolation=cv2.INTER_LINEAR)
            f = int(idx[vi, ti])
            if f not in acc:
                acc[f] = np.zeros((oh, ow), np.float32)
                cnt[f] = np.zeros((oh, ow), np.float32)
            acc[f][r1:r2, c1:c2] += patch
            cnt[f][r1:r2, c1:c2] += 1
    order = sorted(acc)
    maps_out = np.stack([acc[f] / np.maximum(cnt[f], 1) for f in order])
    valid = np.stack([cnt[f] > 0 for f in order])
    return np.asarray(order, dtype=np.int64), maps_out, valid
