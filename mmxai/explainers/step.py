"""STEP: spatio-temporal extremal perturbation (Li et al., WACV 2021),
with the 3D-EP and 2D-EP variants. Smooth masks after TorchRay's
``MaskGenerator`` (Fong et al. 2019)."""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..baselines import gaussian_blur3d
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .options import check_choice, check_positive
from .progress import Progress
from .view_scorer import ViewScorer
from .targets import TargetSpec

VARIANTS = ('step', '3d_ep', '2d_ep')
PERTURBATIONS = ('blur', 'fade')


class SmoothMaskGenerator:
    """Per-frame smooth masks from a low-resolution grid (TorchRay's
    ``MaskGenerator``): each grid point is a bump
    ``k(d) = exp(-2 max(d / sigma - 0.5, 0)^2)`` and bumps are combined by a
    smooth max (softmax pooling with ``coldness``), then clamped to [0, 1].

    ``generate([N, h_in, w_in]) -> [N, H, W]``; when the ``(2r+1)^2``-
    channel intermediate of all frames would exceed ``max_elements``, frames
    are processed in chunks under activation checkpointing, so memory stays
    bounded for long, large clips.
    """

    def __init__(self, shape: Tuple[int, int], step: int, sigma: float,
                 coldness: float = 20.0, max_elements: int = 32 * 2 ** 20):
        self.shape, self.step, self.sigma = tuple(shape), int(step), sigma
        self.coldness = coldness
        self.margin = sigma
        self.padding = 1 + math.ceil((self.margin + sigma) / step)
        self.radius = 1 + math.ceil(sigma / step)
        self.shape_in = [math.ceil(z / step) for z in self.shape]
        self.shape_mid = [z + 2 * self.padding - (2 * self.radius + 1) + 1
                          for z in self.shape_in]
        self.shape_up = [step * z for z in self.shape_mid]
        self.shape_out = [z - step + 1 for z in self.shape_up]
        k = 2 * self.radius + 1
        inv = [zm / zu for zm, zu in zip(self.shape_mid, self.shape_up)]
        uy, ux = torch.meshgrid(
            torch.arange(self.shape_out[0], dtype=torch.float32),
            torch.arange(self.shape_out[1], dtype=torch.float32),
            indexing='ij')
        weight = torch.zeros((1, k * k, *self.shape_out))
        for ky in range(k):
            for kx in range(k):
                iy = torch.floor(inv[0] * uy) + ky - self.padding
                ix = torch.floor(inv[1] * ux) + kx - self.padding
                delta = torch.sqrt((uy - (self.margin + step * iy)) ** 2 +
                                   (ux - (self.margin + step * ix)) ** 2)
                z = delta / sigma
                weight[0, ky * k + kx] = torch.exp(
                    -2 * (z - 0.5).clamp(min=0) ** 2)
        self.weight = weight
        self.chunk = max(1, max_elements // weight.numel())

    def _generate(self, grid: Tensor) -> Tensor:
        k = 2 * self.radius + 1
        m = F.unfold(grid[:, None], (k, k), padding=(self.padding, ) * 2)
        m = m.reshape(len(grid), -1, *self.shape_mid)
        m = F.interpolate(m, size=self.shape_up, mode='nearest')
        m = F.pad(m, (0, -self.step + 1, 0, -self.step + 1))
        m = self.weight.to(m) * m
        m = (m * F.softmax(self.coldness * m, dim=1)).sum(dim=1)
        o = round(self.margin)
        return m.clamp(0, 1)[:, o:o + self.shape[0], o:o + self.shape[1]]

    def footprint(self) -> Tensor:
        """``[h_in, w_in]`` visible mass of each grid point's bump (the
        crop cuts border bumps: corner ones keep about a third)."""
        h, w = self.shape_in
        eye = torch.eye(h * w).view(h * w, h, w)
        with torch.no_grad():
            return self.generate(eye).sum((1, 2)).view(h, w)

    def generate(self, grid: Tensor) -> Tensor:
        if grid.shape[0] <= self.chunk:
            return self._generate(grid)
        outs = []
        for s in range(0, grid.shape[0], self.chunk):
            part = grid[s:s + self.chunk]
            outs.append(checkpoint(self._generate, part, use_reentrant=False)
                        if part.requires_grad else self._generate(part))
        return torch.cat(outs)


def ellipsoid(kt: int, ks: int, device=None) -> Tensor:
    """``[kt, ks, ks]`` 0/1 ellipsoid inscribed in its box (voxel centres)."""
    def axis(n):
        return (torch.arange(n, dtype=torch.float32, device=device) + 0.5 -
                n / 2) / (n / 2)
    t, y, x = torch.meshgrid(axis(kt), axis(ks), axis(ks), indexing='ij')
    return ((t ** 2 + y ** 2 + x ** 2) <= 1).float()


@EXPLAINERS.register_module()
class STEP(BaseExplainer):
    """Spatio-temporal extremal perturbation: for each area ``a``, the
    smooth mask ``m`` over (T, H, W) that keeps the target's probability
    when everything else is blurred (or faded), minimising

    ``E = -log p_c(Phi(x, m)) + lambda * mean((sort(m) - r_a)^2)
    + mu * L_core``.

    ``r_a`` has its last ``a * T*H*W`` entries 1 (per frame and ``a*H*W``
    for ``variant='2d_ep'``); ``L_core`` (``variant='step'`` only) pushes
    the ``k`` largest ellipsoid averages of the mask to 1 and the rest to 0.
    ``lambda = 300 * 1.0008668^i``, ``mu = 0`` for the first ``core_start``
    iterations then 300; SGD (lr 0.05, momentum 0.9, dampening 0.9), masks
    clamped to [0, 1] after each step. All areas are optimised together as
    one batch (``batch_size`` splits them; the result is the same). Final
    map: the sum of the area masks, Gaussian-smoothed per frame, divided by
    its maximum (``extras['area_masks']`` keeps each area's mask).

    Sizes are the authors' at 112 px scaled with ``s = min(H, W)``: grid
    step ``7 s/112``, bump sigma ``11 s/112``, core kernel
    ``(T/2, 11 s/112, 11 s/112)``, maximum blur ``20 s/224`` (8 levels).

    Args:
        areas: kept fractions optimised together.
        max_iter: iterations (authors: about 1000-1200).
        variant: ``'step'``, ``'3d_ep'`` (volume area constraint, no core
            loss) or ``'2d_ep'`` (area constraint per frame).
        perturbation: ``'blur'`` (pyramid) or ``'fade'`` (towards 0).
        objective: ``'log_prob'`` (paper; with several views the log of
            what ``predict`` reports with ``average_clips='prob'``: each
            view's softmax averaged, the perturbed view's own) or
            ``'logit'`` (the view-averaged pre-softmax score).
        balance_edges: deviation from the authors (default on): each grid
            parameter's gradient is divided by its bump's visible mass
            (relative to a full bump). Plain SGD moves border parameters,
            whose bumps the crop cuts to 1/3-2/3, 2-3x slower, so before
            convergence the border keeps the highest mask values and the
            map's maximum sits in a corner (seen on 64 px clips at 60
            iterations). ``False`` gives the authors' plain SGD.

    The core loss's window lattice is centred in the frame (the authors'
    unpadded stride-``S`` convolution left the bottom/right remainder
    uncovered and favoured the top-left corner).
    """
    many_forwards = True
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module,
                 areas: Sequence[float] = (0.05, 0.1, 0.15, 0.5),
                 max_iter: int = 1000, variant: str = 'step',
                 perturbation: str = 'blur', objective: str = 'log_prob',
                 lr: float = 0.05, momentum: float = 0.9,
                 dampening: float = 0.9, lambda_0: float = 300.0,
                 lambda_growth: float = 1.0008668, mu: float = 300.0,
                 core_start: int = 100, num_levels: int = 8,
                 max_blur: Optional[float] = None,
                 step: Optional[int] = None, sigma: Optional[float] = None,
                 core_kernel: Optional[Sequence[int]] = None,
                 smooth_sigma: Optional[float] = None,
                 batch_size: Optional[int] = None,
                 balance_edges: bool = True,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_choice('variant', variant, VARIANTS)
        check_choice('perturbation', perturbation, PERTURBATIONS)
        check_choice('objective', objective, ('log_prob', 'logit'))
        check_positive('max_iter', max_iter)
        areas = [float(a) for a in (areas if isinstance(areas, (list, tuple))
                                    else [areas])]
        if not areas or not all(0 < a <= 1 for a in areas):
            raise MMXAIError(f'areas must be fractions in (0, 1], got {areas}')
        if batch_size is not None:
            check_positive('batch_size', batch_size)
        self.areas, self.max_iter, self.variant = areas, int(max_iter), variant
        self.perturbation, self.objective = perturbation, objective
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.lambda_0, self.lambda_growth = lambda_0, lambda_growth
        self.mu, self.core_start, self.num_levels = mu, core_start, num_levels
        self.max_blur, self.step, self.sigma = max_blur, step, sigma
        self.core_kernel, self.smooth_sigma = core_kernel, smooth_sigma
        self.batch_size, self.progress = batch_size, progress
        self.balance_edges = bool(balance_edges)

    def settings(self) -> Dict[str, Any]:
        return dict(areas=self.areas, max_iter=self.max_iter,
                    variant=self.variant, perturbation=self.perturbation,
                    objective=self.objective, lr=self.lr,
                    lambda_0=self.lambda_0, mu=self.mu,
                    core_start=self.core_start, step=self.step,
                    balance_edges=self.balance_edges,
                    sigma=self.sigma)

    def _batch_size(self) -> int:
        """Areas optimised per batch (``None``: all of them)."""
        return int(self.batch_size or len(self.areas))

    # ----------------------------------------------------------- geometry
    def sizes(self, t: int, h: int, w: int) -> Dict[str, Any]:
        s = min(h, w)
        step = self.step or max(1, round(7 * s / 112))
        sigma = self.sigma or 11 * s / 112
        kt, ks = self.core_kernel or (max(1, round(t / 2)),
                                      max(1, round(11 * s / 112)))
        return dict(step=int(step), sigma=float(sigma), core=(int(kt),
                                                              int(ks)),
                    max_blur=self.max_blur if self.max_blur is not None
                    else 20 * s / 224,
                    smooth=self.smooth_sigma if self.smooth_sigma is not None
                    else step / 2)

    def pyramid(self, x: Tensor, max_blur: float) -> Tensor:
        """``[L, C, T, H, W]``: level 0 most perturbed, level L-1 = x."""
        levels = []
        for f in torch.linspace(0, 1, self.num_levels).tolist():
            if self.perturbation == 'fade':
                levels.append(x * f)
            else:
                sig = (1 - f) * max_blur
                levels.append(gaussian_blur3d(x, (0, sig, sig)) if sig > 0
                              else x)
        return torch.stack(levels)

    def apply(self, pyramid: Tensor, mask: Tensor) -> Tensor:
        """``[A, T, H, W]`` masks -> ``[A, C, T, H, W]`` perturbed clips,
        each voxel interpolating between two pyramid levels."""
        w = mask[:, None] * (self.num_levels - 1)  # [A, 1, T, H, W]
        k = w.detach().floor().clamp(max=self.num_levels - 1)
        frac = w - k
        k = k.long()
        c = pyramid.shape[1]
        flat = pyramid.flatten(1)  # [L, C*T*H*W]

        def gather(idx):
            idx = idx.expand(-1, c, -1, -1, -1).flatten(1)  # [A, CTHW]
            return torch.gather(flat, 0, idx).view(len(mask), *pyramid.shape[1:])
        y0 = gather(k)
        y1 = gather((k + 1).clamp(max=self.num_levels - 1))
        return (1 - frac) * y0 + frac * y1

    def area_loss(self, mask: Tensor, areas: Tensor) -> Tensor:
        """``mean((sort(m) - r_a)^2)`` per area: ``[A]``."""
        if self.variant == '2d_ep':
            flat = mask.flatten(2)  # [A, T, HW]
        else:
            flat = mask.flatten(1)[:, None]  # [A, 1, THW]
        n = flat.shape[-1]
        ranks = torch.arange(n, device=mask.device).view(1, 1, -1)
        ref = (ranks >= n - (areas * n).round().long().view(-1, 1, 1)).to(
            mask.dtype)
        return ((flat.sort(-1).values - ref) ** 2).mean((1, 2))

    def core_loss(self, mask: Tensor, areas: Tensor, kernel: Tensor
                  ) -> Tensor:
        """Compactness: ellipsoid averages ``c`` sorted descending; the top
        ``k = ceil(a THW / (K S^2 pi / 6))`` pushed to 1, the rest to 0."""
        kt, ks = kernel.shape[0], kernel.shape[1]
        t, h, w = mask.shape[1:]
        rh, rw = (h - ks) % ks, (w - ks) % ks  # centre the window lattice
        c = F.conv3d(mask[:, None, :, rh // 2:h - (rh - rh // 2),
                          rw // 2:w - (rw - rw // 2)], kernel[None, None],
                     stride=(1, ks, ks)).flatten(1) / kernel.sum()
        c = c.sort(-1, descending=True).values  # [A, M]
        m = c.shape[1]
        k = torch.ceil(areas * t * h * w / (kt * ks * ks * math.pi / 6))
        k = k.clamp(1, m).long().view(-1, 1)
        idx = torch.arange(m, device=mask.device).view(1, -1)
        top = (idx < k).to(c.dtype)
        rest = 1 - top
        return ((c - 1) ** 2 * top).sum(1) / top.sum(1) + \
            (c ** 2 * rest).sum(1) / rest.sum(1).clamp_min(1)

    # ---------------------------------------------------------- optimise
    def optimise(self, scorer: ViewScorer, b: int, v: int, cls: int,
                 areas: Sequence[float], bar: Progress
                 ) -> Tuple[Tensor, Tensor]:
        """Masks ``[A, T, H, W]`` and final target probabilities ``[A]``."""
        x = scorer.video[b, v]
        _, t, h, w = x.shape
        sz = self.sizes(t, h, w)
        gen = SmoothMaskGenerator((h, w), sz['step'], sz['sigma'])
        with torch.no_grad():
            pyramid = self.pyramid(x, sz['max_blur'])
        kt, ks = sz['core']
        kernel = ellipsoid(min(kt, t), min(ks, h, w), x.device)
        a_t = torch.tensor(areas, device=x.device)
        n_a = len(areas)
        param = torch.ones((n_a, t, *gen.shape_in), device=x.device,
                           requires_grad=True)
        foot = gen.footprint().to(x.device)
        scale = foot.max() / foot.clamp_min(1e-6) if self.balance_edges \
            else torch.ones_like(foot)
        opt = torch.optim.SGD([param], lr=self.lr, momentum=self.momentum,
                              dampening=self.dampening)
        for it in range(self.max_iter):
            mask = gen.generate(param.flatten(0, 1)).view(n_a, t, h, w)
            clips = self.apply(pyramid, mask)
            reward = self.reward(scorer, b, v, clips, cls)
            lam = self.lambda_0 * self.lambda_growth ** it
            energy = -reward + lam * self.area_loss(mask, a_t)
            if self.variant == 'step' and it >= self.core_start:
                energy = energy + self.mu * self.core_loss(mask, a_t, kernel)
            param.grad = torch.autograd.grad(energy.sum(), param)[0] * scale
            opt.step()
            with torch.no_grad():
                param.clamp_(0, 1)
            bar.update(1)
        with torch.no_grad():
            mask = gen.generate(param.flatten(0, 1)).view(n_a, t, h, w)
            probs = self.target_probs(scorer, b, v,
                                      scorer.logits(self.apply(pyramid,
                                                               mask)), cls)
        return mask.detach(), probs

    @staticmethod
    def target_log_probs(scorer: ViewScorer, b: int, v: int, z: Tensor,
                         cls: int) -> Tensor:
        """``[A]`` log of what ``predict`` reports for class ``cls`` with
        ``average_clips='prob'`` when view ``v`` of sample ``b`` is
        replaced by clips of pre-softmax scores ``z`` ``[A, K]``:
        ``log((softmax(z)_c + sum_{u != v} p_u,c) / V)``, computed stably
        (with one view: ``log_softmax(z)_c``)."""
        own = z.float().log_softmax(-1)[:, cls]
        if scorer.num_views == 1:
            return own
        probs = scorer.view_probs[b, :, cls]
        others = (probs.sum() - probs[v]).clamp_min(0).to(own)
        return torch.logaddexp(own, others.log()) - math.log(
            scorer.num_views)

    def target_probs(self, scorer: ViewScorer, b: int, v: int, z: Tensor,
                     cls: int) -> Tensor:
        """``[A]`` :meth:`target_log_probs` as probabilities."""
        return self.target_log_probs(scorer, b, v, z, cls).exp()

    def reward(self, scorer: ViewScorer, b: int, v: int, clips: Tensor,
               cls: int) -> Tensor:
        """``[A]`` the objective's reward of perturbed copies of view
        ``v``: ``'log_prob'``, the log of ``predict``'s probability of the
        target (per-view softmax averaged over the views,
        :meth:`target_log_probs`); ``'logit'``, the view-averaged
        pre-softmax score."""
        z = scorer.logits(clips)  # this view's pre-softmax scores [A, K]
        if self.objective == 'log_prob':
            return self.target_log_probs(scorer, b, v, z, cls)
        return scorer.combine(b, v, z)[:, cls]

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, 'logit')
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        chunk = self.batch_size or len(self.areas)
        groups = [self.areas[i:i + chunk]
                  for i in range(0, len(self.areas), chunk)]
        raw = video.new_zeros((b_n, v_n, t, h, w), dtype=torch.float32)
        area_masks = video.new_zeros((b_n, v_n, len(self.areas), t, h, w))
        area_probs = video.new_zeros((b_n, v_n, len(self.areas)))
        smooth = self.sizes(t, h, w)['smooth']
        bar = Progress(b_n * v_n * len(groups) * self.max_iter, 'step',
                       self.progress)
        with bar, frozen_parameters(self.model), torch.enable_grad():
            for b in range(b_n):
                for v in range(v_n):
                    masks, probs = [], []
                    for group in groups:
                        m, p = self.optimise(scorer, b, v, int(targets[b]),
                                             group, bar)
                        masks.append(m)
                        probs.append(p)
                    area_masks[b, v] = torch.cat(masks)
                    area_probs[b, v] = torch.cat(probs)
                    total = area_masks[b, v].sum(0)
                    if smooth > 0:
                        total = gaussian_blur3d(total, (0, smooth, smooth))
                    raw[b, v] = total / total.max().clamp_min(1e-12)
        return Attribution(raw, scores, targets,
                           extras={'area_masks': area_masks,
                                   'area_probs': area_probs,
                                   'areas': self.areas},
                           probs=scorer.probs)
