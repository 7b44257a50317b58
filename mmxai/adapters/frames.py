"""Model inputs back to the frames a person looks at.

``inputs_to_frames`` undoes the data preprocessor, so the hook and the
dataset runner can draw overlays on exactly what the model saw, and
visualization never needs a model.
"""
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from .base import build_adapter, unwrap_model

__all__ = ['inputs_to_frames', 'video_to_frames']


def video_to_frames(video: Tensor) -> np.ndarray:
    """Canonical video ``[B, V, C, T, H, W]`` (0-255 RGB, any C) ->
    uint8 ``[B, V, T, H, W, 3]`` (C=1 repeated, C>3 cut, C=2 padded)."""
    video = video.detach().float().cpu()
    c = video.shape[2]
    if c == 1:
        video = video.repeat(1, 1, 3, 1, 1, 1)
    elif c != 3:
        video = video[:, :, :3] if c > 3 else torch.cat(
            [video, video[:, :, -1:].repeat(1, 1, 3 - c, 1, 1, 1)], 2)
    frames = video.permute(0, 1, 3, 4, 5, 2).round().clamp(0, 255)
    return frames.to(torch.uint8).numpy()


def inputs_to_frames(model: nn.Module, inputs: Tensor,
                     rgb: Optional[bool] = None) -> np.ndarray:
    """Preprocessed inputs back to uint8 RGB frames ``[B, V, T, H, W, 3]``.

    Undoes the data preprocessor's ``x' = (x - mean) / std`` and its
    ``to_rgb`` flip (pipelines decode RGB; ``to_rgb=True`` makes the model
    see BGR). ``rgb=False`` forces a channel flip, ``True`` none.
    """
    model = unwrap_model(model)
    video = build_adapter(model).to_video(inputs).detach().float().cpu()
    c = video.shape[2]
    dp = getattr(model, 'data_preprocessor', None)
    mean = getattr(dp, 'mean', None)
    std = getattr(dp, 'std', None)
    shape = (1, 1, c, 1, 1, 1)
    if std is not None and std.numel() == c:
        video = video * std.detach().float().cpu().view(shape)
    if mean is not None and mean.numel() == c:
        video = video + mean.detach().float().cpu().view(shape)
    flip = bool(getattr(dp, 'to_rgb', False)) if rgb is None else not rgb
    if flip and c == 3:
        video = video.flip(2)
    return video_to_frames(video)
