"""Removal values ("baselines") and Gaussian blurs, in the normalised input
space, for the explainers and the faithfulness metrics.

Videos are canonical ``[B, V, C, T, H, W]`` (any ``[..., C, T, H, W]``
works). Normalisation maps the dataset mean colour to 0, so a zero video is
the "mean" clip. One vocabulary (:data:`BASELINES`, numbers, tensors):

* ``'mean'``, ``'zero'``, ``'fade'`` (the metrics' name): 0 everywhere.
* ``'blur'``: a Gaussian blur; ``blur_sigma`` picks it: ``None`` ->
  :func:`gaussian_blur3d` with :func:`default_blur_sigma`, ``(t, h, w)`` ->
  :func:`gaussian_blur3d`, a number ``s`` -> :func:`gaussian_blur` (each
  frame, ``s`` px; the metrics' blur).
* ``'temporal_mean'``: every frame replaced by the clip's mean frame
  (motion removed, static appearance kept; an mmxai choice).
* a number: that constant (normalised units); a tensor: broadcast.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import MMXAIError

__all__ = ['BASELINES', 'Baseline', 'check_baseline', 'default_blur_sigma',
           'gaussian_blur', 'gaussian_blur3d', 'make_baseline']

#: Baseline names (numbers and tensors are accepted too).
BASELINES = ('mean', 'zero', 'fade', 'blur', 'temporal_mean')
_ZERO = ('mean', 'zero', 'fade')
Baseline = Union[str, float, int, Tensor]
BlurSigma = Union[None, float, Sequence[float]]


def _gauss_kernel(sigma: float, device, dtype) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur3d(video: Tensor, sigma: Sequence[Optional[float]],
                    dims: Sequence[int] = (-3, -2, -1)) -> Tensor:
    """Separable Gaussian blur of ``[..., T, H, W]`` along ``dims``.

    Per axis ``d`` with ``s = sigma[d] > 0``: a 1D kernel
    ``k(x) ~ exp(-x^2 / (2 s^2))``, ``|x| <= ceil(3 s)``, normalised to sum
    1, replicate padding. ``s`` of 0 or None leaves that axis unblurred.
    Same shape as ``video``.
    """
    out = video
    for s, d in zip(sigma, dims):
        if s is None or s <= 0:
            continue
        k = _gauss_kernel(float(s), video.device, video.dtype)
        r = (k.numel() - 1) // 2
        x = out.movedim(d, -1)
        shape = x.shape
        x = x.reshape(-1, 1, shape[-1])
        x = F.pad(x, (r, r), mode='replicate')
        x = F.conv1d(x, k.view(1, 1, -1)).reshape(shape)
        out = x.movedim(-1, d)
    return out


def gaussian_blur(video: Tensor, sigma: float) -> Tensor:
    """Spatial Gaussian blur of every frame of ``[..., C, T, H, W]``.

    The 2D kernel ``k(y) k(x)``, ``k(x) ~ exp(-x^2 / (2 sigma^2))``,
    ``|x| <= ceil(3 sigma)``, reflect padding (replicate when the radius
    reaches ``min(H, W)``); frames are independent. ``sigma <= 0``: the
    video itself. Same shape as ``video``.
    """
    if sigma <= 0:
        return video
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32,
                     device=video.device)
    k = torch.exp(-x**2 / (2 * sigma**2))
    k = (k / k.sum()).to(video.dtype)
    shape = video.shape
    h, w = shape[-2:]
    flat = video.reshape(-1, 1, h, w)
    mode = 'reflect' if radius < min(h, w) else 'replicate'
    flat = F.pad(flat, (radius, ) * 4, mode=mode)
    flat = F.conv2d(flat, k.view(1, 1, 1, -1))
    flat = F.conv2d(flat, k.view(1, 1, -1, 1))
    return flat.reshape(shape)


def default_blur_sigma(t: int, h: int, w: int) -> Tuple[float, float, float]:
    """REVEX-style 3D blur ``(max(T / 8, 0.5), H / 22.4, W / 22.4)``: about
    10 px at 224 px, 1 frame per 8 frames."""
    return (max(t / 8.0, 0.5), h / 22.4, w / 22.4)


def check_baseline(baseline: Baseline) -> None:
    """Raise :class:`MMXAIError` unless ``baseline`` is a name of
    :data:`BASELINES`, a number or a tensor."""
    if isinstance(baseline, Tensor) or (isinstance(baseline, (int, float))
                                        and not isinstance(baseline, bool)):
        return
    if baseline not in BASELINES:
        raise MMXAIError(f"unknown baseline '{baseline}': use one of "
                         f"{', '.join(BASELINES)} or a number")


def make_baseline(video: Tensor, baseline: Baseline = 'mean',
                  blur_sigma: BlurSigma = None) -> Tensor:
    """The removal value for ``video [..., C, T, H, W]`` (same shape); the
    vocabulary is in this module's docstring."""
    check_baseline(baseline)
    if isinstance(baseline, Tensor):
        return baseline.to(video).expand_as(video)
    if isinstance(baseline, (int, float)):
        return torch.full_like(video, float(baseline))
    if baseline in _ZERO:
        return torch.zeros_like(video)
    if baseline == 'temporal_mean':
        return video.mean(-3, keepdim=True).expand_as(video).contiguous()
    # 'blur'
    if isinstance(blur_sigma, (int, float)):
        return gaussian_blur(video, float(blur_sigma))
    t, h, w = video.shape[-3:]
    return gaussian_blur3d(video, blur_sigma or default_blur_sigma(t, h, w))
