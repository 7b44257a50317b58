"""Shared pieces of the perturbation and gradient explainers.

* :class:`ViewScorer`: scores perturbed copies of one view of one sample,
  batched, and combines them with the other views' unperturbed scores into
  the view-averaged score the model decides on.
* :func:`gaussian_blur3d`, :func:`make_baseline`: removal values (mean, blur,
  constant) in the normalised input space.
* :func:`upsample_shifted`: low-resolution masks to full resolution with
  random shifts (RISE), one batch at a time.
* :class:`Progress`: a progress bar with ETA that appears only for long runs.
* :func:`frozen_parameters`: no parameter gradients while explaining.
"""
import contextlib
import math
import sys
import time
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MMXAIError

SCORES = ('prob', 'logit')
Baseline = Union[str, float, int, Tensor]


# --------------------------------------------------------------- options
def check_choice(name: str, value, choices: Sequence) -> None:
    """Raise :class:`MMXAIError` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise MMXAIError(f"unknown {name} '{value}': use one of "
                         f"{', '.join(map(str, choices))}")


def check_positive(name: str, value, minimum: float = 1) -> None:
    if value is None or value < minimum:
        raise MMXAIError(f'{name} must be at least {minimum}, got {value}')


def triple(name: str, value, default: Sequence[int]) -> Tuple[int, ...]:
    """An int or ``(t, h, w)`` option -> a 3-tuple of positive ints."""
    if value is None:
        value = default
    if isinstance(value, (int, float)):
        value = (value, ) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise MMXAIError(f'{name} must be an int or (t, h, w) of positive '
                         f'ints, got {value}')
    return value


# ---------------------------------------------------------------- scoring
def model_inputs(adapter, video: Tensor) -> Tensor:
    """Canonical ``[N, V, C, T, H, W]`` -> the model's contiguous inputs
    (Recognizer2D's ``view`` needs contiguous memory)."""
    return adapter.from_video(video).contiguous()


class ViewScorer:
    """Score perturbed views as the model's view-averaged decision.

    Each view ``v`` of sample ``b`` is perturbed on its own; a batch of
    perturbed copies ``[N, C, T, H, W]`` is run as ``N`` one-view clips and
    combined with the other views' unperturbed pre-softmax scores:
    ``z = (z_v' + sum_{u != v} z_u) / V``. For heads that average views'
    pre-softmax scores (``predict`` with ``average_clip``; TSN/TSM average
    consensus) this equals scoring the whole multi-view input with view
    ``v`` perturbed, at the cost of one view. With ``V = 1`` it is exactly
    the model's score.

    Args:
        adapter: the explainer's model adapter.
        inputs: preprocessed inputs (the model's layout).
        score: ``'prob'`` (softmax of the view-averaged score) or ``'logit'``.
    """

    def __init__(self, adapter, inputs: Tensor, score: str = 'prob'):
        check_choice('score', score, SCORES)
        self.adapter = adapter
        self.score = score
        self.video = adapter.to_video(inputs).detach()  # [B, V, C, T, H, W]
        b, v = self.video.shape[:2]
        with torch.no_grad():  # not inference mode: STEP differentiates
            per_view = torch.stack([
                torch.cat([self.logits(self.video[i, j:j + 1])
                           for j in range(v)]) for i in range(b)])
        self.view_logits = per_view.clone()  # [B, V, K]
        self.sum_logits = self.view_logits.sum(1)  # [B, K]
        self.num_views = v

    def logits(self, clips: Tensor) -> Tensor:
        """``[N, C, T, H, W]`` one-view clips -> ``[N, K]`` pre-softmax."""
        return self.adapter.scores(model_inputs(self.adapter, clips[:, None]))

    def combine(self, b: int, v: int, logits: Tensor) -> Tensor:
        """Perturbed view logits ``[N, K]`` -> scores ``[N, K]``."""
        if self.num_views > 1:
            rest = (self.sum_logits[b] - self.view_logits[b, v]).to(logits)
            logits = (logits + rest) / self.num_views
        return logits.float().softmax(-1) if self.score == 'prob' \
            else logits.float()

    def __call__(self, b: int, v: int, clips: Tensor) -> Tensor:
        """Score ``[N, C, T, H, W]`` perturbed copies of view ``v`` of
        sample ``b``: ``[N, K]``."""
        return self.combine(b, v, self.logits(clips))

    def clean(self, b: int, v: int) -> Tensor:
        """``[K]`` score of the unperturbed input."""
        return self.combine(b, v, self.view_logits[b, v][None])[0]


# -------------------------------------------------------------- baselines
def _gauss_kernel(sigma: float, device, dtype) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur3d(video: Tensor, sigma: Sequence[float],
                    dims: Sequence[int] = (-3, -2, -1)) -> Tensor:
    """Separable Gaussian blur of ``[..., T, H, W]`` along ``dims``
    (replicate padding). A sigma of 0 leaves that axis unblurred."""
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


def default_blur_sigma(t: int, h: int, w: int) -> Tuple[float, float, float]:
    """REVEX-style 3D blur: about 10 px at 224 px, 1 frame per 8 frames."""
    return (max(t / 8.0, 0.5), h / 22.4, w / 22.4)


def make_baseline(video: Tensor, baseline: Baseline,
                  blur_sigma: Optional[Sequence[float]] = None) -> Tensor:
    """The removal value for ``video [..., C, T, H, W]`` (same shape).

    ``'mean'``/``'zero'``: 0, the dataset mean after normalisation;
    ``'blur'``: a 3D-Gaussian-blurred copy; ``'temporal_mean'``: every
    frame replaced by the clip's mean frame (the clip with its motion
    removed and its static appearance kept, so attributions answer "which
    changes over time matter"; an mmxai choice, not from a paper); a
    number: that constant (in normalised units); a tensor: broadcast to the
    video.
    """
    if isinstance(baseline, Tensor):
        return baseline.to(video).expand_as(video)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(video, float(baseline))
    if baseline in ('mean', 'zero'):
        return torch.zeros_like(video)
    if baseline == 'temporal_mean':
        return video.mean(-3, keepdim=True).expand_as(video).contiguous()
    if baseline == 'blur':
        t, h, w = video.shape[-3:]
        sigma = blur_sigma or default_blur_sigma(t, h, w)
        return gaussian_blur3d(video, sigma)
    raise MMXAIError(f"unknown baseline '{baseline}': use 'mean', 'blur', "
                     "'temporal_mean' or a number")


# ------------------------------------------------------------------ masks
def upsample_shifted(grids: Tensor, size: Sequence[int],
                     generator: torch.Generator,
                     out: Optional[Tensor] = None) -> Tensor:
    """RISE upsampling: ``[N, t, h, w]`` cell grids -> ``[N, T, H, W]``.

    Each grid is trilinearly upsampled to ``(cells + 1) * cell_size`` and
    cropped at a random offset in ``[0, cell_size)`` per axis (Petsiuk et
    al.), so cell borders fall anywhere. Offsets come from ``generator``.
    ``out``: an optional ``[N, T, H, W]`` float tensor to write into (on
    any device).
    """
    n, cells = grids.shape[0], grids.shape[1:]
    cell = [int(math.ceil(s / c)) for s, c in zip(size, cells)]
    up = [(c + 1) * k for c, k in zip(cells, cell)]
    big = F.interpolate(grids[:, None].float(), size=up, mode='trilinear',
                        align_corners=False)[:, 0]
    shifts = torch.stack([torch.randint(0, k, (n, ), generator=generator)
                          for k in cell], 1).tolist()
    if out is None:
        out = torch.empty((n, *size), dtype=big.dtype, device=big.device)
    t, h, w = size
    for i, (a, b, c) in enumerate(shifts):
        out[i] = big[i, a:a + t, b:b + h, c:c + w]
    return out


# --------------------------------------------------------------- progress
class Progress:
    """A one-line progress bar with ETA on stderr.

    ``enabled=True`` always shows it; ``None`` (default) shows it only once a
    run has taken more than ``delay`` seconds; ``False`` never.
    """

    def __init__(self, total: int, desc: str = '',
                 enabled: Optional[bool] = None, delay: float = 2.0):
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled
        self.delay = delay
        self.done = 0
        self.start = time.perf_counter()
        self.shown = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled is False:
            return
        elapsed = time.perf_counter() - self.start
        if self.enabled is None and elapsed < self.delay and not self.shown:
            return
        self.shown = True
        frac = min(self.done / self.total, 1.0)
        eta = elapsed / frac - elapsed if frac > 0 else float('nan')
        bar = '#' * int(frac * 30)
        sys.stderr.write(f'\r{self.desc} [{bar:<30}] {self.done}/{self.total}'
                         f' {elapsed:.0f}s elapsed, ETA {eta:.0f}s ')
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write('\n')
            sys.stderr.flush()
            self.shown = False

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batches(total: int, batch_size: int) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of consecutive batches covering ``range(total)``."""
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


# ------------------------------------------------------------- gradients
@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters stop requiring gradients inside the block (restored on
    exit): back-propagation to the input skips weight gradients."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def reduce_channels(attr: Tensor, reduction: str, dim: int = 2) -> Tensor:
    """Reduce colour channels of ``[B, V, C, T, H, W]`` attributions.

    ``'sum'`` (keeps completeness), ``'abs_sum'``, ``'max_abs'`` (Simonyan
    et al.'s saliency) or ``'l2'``.
    """
    if reduction == 'sum':
        return attr.sum(dim)
    if reduction == 'abs_sum':
        return attr.abs().sum(dim)
    if reduction == 'max_abs':
        return attr.abs().amax(dim)
    if reduction == 'l2':
        return attr.pow(2).sum(dim).sqrt()
    raise MMXAIError(f"unknown reduction '{reduction}': use sum, abs_sum, "
                     'max_abs or l2')


REDUCTIONS = ('sum', 'abs_sum', 'max_abs', 'l2')
