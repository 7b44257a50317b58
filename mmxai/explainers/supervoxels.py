"""LIME and Kernel SHAP over spatio-temporal segments (REVEX adaptation).

Segments: 3D SLIC supervoxels (scikit-image, a declared dependency, imported
only when used) or a regular ``(t, h, w)`` grid (no dependency, fast,
content-independent). Removing a segment replaces it by the removal value,
by default a 3D-Gaussian-blurred copy of the clip (REVEX).
"""
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..baselines import make_baseline
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .options import SCORES, check_choice, check_positive, triple
from .progress import Progress
from .targets import TargetSpec

SEGMENTATIONS = ('slic', 'grid')


def grid_segments(t: int, h: int, w: int, cells: Sequence[int]) -> Tensor:
    """``[T, H, W]`` labels of a regular grid of ``cells`` (t, h, w)."""
    ct, ch, cw = (min(c, d) for c, d in zip(cells, (t, h, w)))
    it = torch.arange(t) * ct // t
    ih = torch.arange(h) * ch // h
    iw = torch.arange(w) * cw // w
    return (it.view(-1, 1, 1) * ch + ih.view(1, -1, 1)) * cw + iw.view(1, 1, -1)


def slic_segments(video: Tensor, n_segments: int = 200,
                  compactness: float = 20.0,
                  temporal_spacing: float = 0.2) -> Tensor:
    """3D SLIC on a ``[C, T, H, W]`` clip (rescaled to [0, 1]); returns
    ``[T, H, W]`` labels ``0..S-1``. ``temporal_spacing`` < 1 makes frames
    closer, so supervoxels extend further in time (REVEX: 0.2)."""
    from skimage.segmentation import slic
    x = video.detach().float().cpu()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    img = x.permute(1, 2, 3, 0).numpy().astype(np.float64)  # T, H, W, C
    labels = slic(img, n_segments=n_segments, compactness=compactness,
                  spacing=np.array([temporal_spacing, 1.0, 1.0]),
                  channel_axis=-1, convert2lab=False, start_label=0,
                  enforce_connectivity=True)
    _, inverse = np.unique(labels, return_inverse=True)
    return torch.from_numpy(inverse.reshape(labels.shape)).long()


class _SegmentBase(BaseExplainer):
    """Score clips that keep some segments of a view and remove the others
    (replaced by the removal value); a voxel's value is its segment's.

    Subclasses give the coalitions to score (:meth:`coalitions`, ``[N, S]``
    0/1, 1 = segment kept) and turn their scores into segment values
    (:meth:`values`). Scores: softmax probability of the target
    (``score='prob'``, default) or pre-softmax (``'logit'``), view-averaged
    (each view is perturbed on its own, with its own segments).
    ``extras['segments']`` holds the labels ``[B, V, T, H, W]``.
    """
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module, segmentation: str = 'slic',
                 n_segments: int = 200, compactness: float = 20.0,
                 temporal_spacing: float = 0.2,
                 grid: Sequence[int] = (4, 7, 7), baseline='blur',
                 score: str = 'prob', batch_size: int = 8,
                 blur_sigma: Optional[Sequence[float]] = None,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_choice('segmentation', segmentation, SEGMENTATIONS)
        check_choice('score', score, SCORES)
        check_positive('batch_size', batch_size)
        self.segmentation = segmentation
        self.n_segments, self.compactness = int(n_segments), compactness
        self.temporal_spacing = temporal_spacing
        self.grid = triple('grid', grid, (4, 7, 7))
        self.baseline, self.score = baseline, score
        self.batch_size = int(batch_size)
        self.blur_sigma, self.progress = blur_sigma, progress

    def segment_settings(self) -> Dict[str, Any]:
        """Segmentation, removal, score and batch settings."""
        return dict(segmentation=self.segmentation,
                    n_segments=self.n_segments, grid=list(self.grid),
                    baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor',
                    score=self.score, batch_size=self.batch_size)

    def settings(self) -> Dict[str, Any]:
        return self.segment_settings()

    def segments(self, x: Tensor) -> Tensor:
        """``[C, T, H, W]`` -> ``[T, H, W]`` labels on ``x``'s device."""
        t, h, w = x.shape[1:]
        if self.segmentation == 'grid':
            return grid_segments(t, h, w, self.grid).to(x.device)
        return slic_segments(x, self.n_segments, self.compactness,
                             self.temporal_spacing).to(x.device)

    def coalitions(self, n_seg: int) -> Tensor:
        """``[N, S]`` 0/1 coalitions to score (1 = segment kept)."""
        raise NotImplementedError

    def values(self, z: Tensor, y: Tensor, clean: Tensor) -> Tensor:
        """Coalitions ``[N, S]``, their scores ``[N]`` and the clean clip's
        score (0-dim) -> ``[S]`` segment values."""
        raise NotImplementedError

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, self.score)
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        raw = video.new_zeros((b_n, v_n, t, h, w), dtype=torch.float32)
        labels_all = torch.zeros((b_n, v_n, t, h, w), dtype=torch.long,
                                 device=video.device)
        for b in range(b_n):
            for v in range(v_n):
                labels_all[b, v] = self.segments(video[b, v])
        plans = [[self.coalitions(int(labels_all[b, v].max()) + 1)
                  for v in range(v_n)] for b in range(b_n)]
        bar = Progress(sum(len(z) for row in plans for z in row), self.name,
                       self.progress)
        with bar, torch.inference_mode():
            for b in range(b_n):
                cls = int(targets[b])
                for v in range(v_n):
                    x = video[b, v]
                    labels = labels_all[b, v]
                    base = make_baseline(x, self.baseline, self.blur_sigma)
                    delta = x - base
                    z = plans[b][v].to(x.device)
                    y = torch.empty(len(z), device=x.device)
                    for start, stop in batches(len(z), self.batch_size):
                        keep = z[start:stop][:, labels]  # [n, T, H, W]
                        clips = base + delta * keep[:, None].to(x.dtype)
                        y[start:stop] = scorer(b, v, clips)[:, cls]
                        bar.update(stop - start)
                    clean = scorer.clean(b, v)[cls].to(y)
                    raw[b, v] = self.values(z, y, clean).float()[labels]
        return Attribution(raw, scores, targets,
                           extras={'segments': labels_all},
                           probs=scorer.probs)


class _SegmentExplainer(_SegmentBase):
    """Sample ``num_samples`` coalitions of segments (seeded by ``seed``,
    the same for every view), score the clips that keep them, fit a
    surrogate; a voxel's value is its segment's coefficient."""

    def __init__(self, model: nn.Module, num_samples: int = 1000,
                 seed: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        check_positive('num_samples', num_samples, 2)
        self.num_samples, self.seed = int(num_samples), int(seed)

    def settings(self) -> Dict[str, Any]:
        return dict(num_samples=self.num_samples, **self.segment_settings(),
                    seed=self.seed)

    def coalitions(self, n_seg: int) -> Tensor:
        return self.sample(torch.Generator().manual_seed(self.seed), n_seg)

    def values(self, z: Tensor, y: Tensor, clean: Tensor) -> Tensor:
        return self.fit(z.double(), y.double())

    def sample(self, gen: torch.Generator, n_seg: int) -> Tensor:
        """``[N, S]`` 0/1 coalitions (1 = segment kept)."""
        raise NotImplementedError

    def fit(self, z: Tensor, y: Tensor) -> Tensor:
        """Coalitions ``[N, S]``, scores ``[N]`` -> ``[S]`` coefficients."""
        raise NotImplementedError


@EXPLAINERS.register_module()
class SupervoxelLIME(_SegmentExplainer):
    """LIME (Ribeiro et al. 2016) over supervoxels: ``num_samples``
    coalitions kept with probability ``p`` (the first: the whole clip),
    weighted by ``sqrt(exp(-d^2 / width^2))`` with ``d`` the cosine distance
    to the whole clip (``kernel_width`` 0.25), ridge regression
    (``alpha``) with intercept. Segment values are its coefficients."""

    def __init__(self, model: nn.Module, p: float = 0.5,
                 kernel_width: float = 0.25, alpha: float = 1.0, **kwargs):
        super().__init__(model, **kwargs)
        if not 0 < p < 1:
            raise MMXAIError(f'p must be in (0, 1), got {p}')
        self.p, self.kernel_width, self.alpha = p, kernel_width, alpha

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), p=self.p,
                    kernel_width=self.kernel_width, alpha=self.alpha)

    def sample(self, gen, n_seg):
        z = (torch.rand((self.num_samples, n_seg), generator=gen) <
             self.p).float()
        z[0] = 1
        return z

    def fit(self, z, y):
        ones = torch.ones(z.shape[1], dtype=z.dtype, device=z.device)
        cos = (z @ ones) / (z.norm(dim=1) * ones.norm()).clamp_min(1e-12)
        d = 1 - cos
        wts = torch.sqrt(torch.exp(-d ** 2 / self.kernel_width ** 2))
        wn = wts / wts.sum()
        zm, ym = wn @ z, wn @ y
        zc, yc = z - zm, y - ym
        a = zc.t() @ (zc * wts[:, None]) + self.alpha * torch.eye(
            z.shape[1], dtype=z.dtype, device=z.device)
        return torch.linalg.solve(a, zc.t() @ (yc * wts))


@EXPLAINERS.register_module()
class SupervoxelKernelSHAP(_SegmentExplainer):
    """Kernel SHAP (Lundberg & Lee 2017) over supervoxels: coalition sizes
    drawn from the Shapley kernel ``(S-1) / (k (S-k))``, the empty and full
    coalitions always evaluated, and least squares under the efficiency
    constraint ``sum phi = s(x) - s(baseline)`` (exact by construction)."""

    def sample(self, gen, n_seg):
        if n_seg < 2:
            raise MMXAIError('Kernel SHAP needs at least 2 segments')
        k = torch.arange(1, n_seg, dtype=torch.float64)
        probs = (n_seg - 1) / (k * (n_seg - k))
        sizes = torch.multinomial(probs / probs.sum(), self.num_samples - 2,
                                  replacement=True, generator=gen) + 1
        ranks = torch.rand((self.num_samples - 2, n_seg),
                           generator=gen).argsort(1).argsort(1)
        z = (ranks < sizes[:, None]).float()
        return torch.cat([torch.zeros(1, n_seg), torch.ones(1, n_seg), z])

    def fit(self, z, y):
        f0, f1 = y[0], y[1]
        zs, ys = z[2:], y[2:] - f0
        # eliminate the last segment: phi_S = (f1 - f0) - sum_{j<S} phi_j
        target = ys - zs[:, -1] * (f1 - f0)
        design = zs[:, :-1] - zs[:, -1:]
        reg = 1e-8 * torch.eye(design.shape[1], dtype=z.dtype,
                               device=z.device)
        phi = torch.linalg.solve(design.t() @ design + reg,
                                 design.t() @ target)
        return torch.cat([phi, (f1 - f0 - phi.sum()).view(1)])
