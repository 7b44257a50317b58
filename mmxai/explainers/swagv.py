"""SWAG-V (Hartley et al., WACV 2022): supervoxels weighted by the average
input gradient inside each."""
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .batching import batches
from .gradient_utils import reduce_channels
from .gradients import _GradientExplainer
from .options import check_choice, check_positive, triple
from .supervoxels import SEGMENTATIONS, grid_segments, slic_segments
from .targets import TargetSpec

GRADIENTS = ('saliency', 'smoothgrad', 'integrated')


def segment_means(values: Tensor, labels: Tensor) -> Tensor:
    """Each voxel of ``values [T, H, W]`` replaced by the mean of its
    segment (``labels [T, H, W]``, ``0..S-1``)."""
    flat, lab = values.flatten().float(), labels.flatten().long()
    n = int(lab.max()) + 1
    sums = torch.zeros(n, device=flat.device).index_add_(0, lab, flat)
    sizes = torch.zeros(n, device=flat.device).index_add_(
        0, lab, torch.ones_like(flat))
    return (sums / sizes.clamp_min(1))[lab].view(values.shape)


@EXPLAINERS.register_module()
class SWAGV(_GradientExplainer):
    """SWAG-V: a voxel's value is the mean, over its supervoxel, of a
    pixel-level input-gradient map ``g``:
    ``map(p) = 1/|S(p)| sum_{q in S(p)} g(q)``.

    ``g`` is the channel-reduced (``reduction``, default ``max_abs``)
    gradient of the target's score (``score='logit'`` default, or
    ``'prob'``), for ``gradient``:

    * ``'saliency'`` (default): ``d s_c / d x`` at the clip (one backward);
    * ``'smoothgrad'``: the mean gradient over ``n_samples`` noisy copies
      (noise std ``noise_level * (max x - min x)``);
    * ``'integrated'``: Integrated Gradients from the zero (mean) clip,
      ``n_steps`` midpoint steps, ``(x - 0) * mean grad``.

    ``positive=True`` keeps only the positive part of ``g`` before the
    averaging (signed reductions). Supervoxels: 3D SLIC on the clip
    (``segmentation='slic'``, :func:`.supervoxels.slic_segments`) or a
    regular ``grid`` (:func:`.supervoxels.grid_segments`), per view;
    ``extras['segments']`` holds the labels ``[B, V, T, H, W]`` and
    ``extras['gradients']`` the pixel map ``g``.
    """
    many_forwards = True

    def __init__(self, model: nn.Module, gradient: str = 'saliency',
                 segmentation: str = 'slic', n_segments: int = 200,
                 compactness: float = 20.0, temporal_spacing: float = 0.2,
                 grid: Sequence[int] = (4, 7, 7), positive: bool = False,
                 n_samples: int = 16, noise_level: float = 0.15,
                 n_steps: int = 16, seed: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        check_choice('gradient', gradient, GRADIENTS)
        check_choice('segmentation', segmentation, SEGMENTATIONS)
        check_positive('n_segments', n_segments)
        check_positive('n_samples', n_samples)
        check_positive('n_steps', n_steps)
        if noise_level < 0:
            raise MMXAIError(f'noise_level must be >= 0, got {noise_level}')
        self.gradient, self.segmentation = gradient, segmentation
        self.n_segments, self.compactness = int(n_segments), compactness
        self.temporal_spacing = temporal_spacing
        self.grid = triple('grid', grid, (4, 7, 7))
        self.positive = bool(positive)
        self.n_samples, self.noise_level = int(n_samples), float(noise_level)
        self.n_steps, self.seed = int(n_steps), int(seed)

    def settings(self) -> Dict[str, Any]:
        out = dict(super().settings(), gradient=self.gradient,
                   segmentation=self.segmentation, positive=self.positive)
        if self.segmentation == 'slic':
            out.update(n_segments=self.n_segments,
                       compactness=self.compactness,
                       temporal_spacing=self.temporal_spacing)
        else:
            out.update(grid=list(self.grid))
        if self.gradient == 'smoothgrad':
            out.update(n_samples=self.n_samples,
                       noise_level=self.noise_level, seed=self.seed)
        if self.gradient == 'integrated':
            out.update(n_steps=self.n_steps)
        return out

    def evaluations(self) -> int:
        return {'saliency': 1, 'smoothgrad': self.n_samples,
                'integrated': self.n_steps}[self.gradient]

    def segments(self, x: Tensor) -> Tensor:
        """One view ``[C, T, H, W]`` -> ``[T, H, W]`` labels."""
        t, h, w = x.shape[1:]
        if self.segmentation == 'grid':
            return grid_segments(t, h, w, self.grid).to(x.device)
        return slic_segments(x, self.n_segments, self.compactness,
                             self.temporal_spacing).to(x.device)

    def sample_attribution(self, video, cls, bar, index):
        if self.gradient == 'saliency':
            grads, _ = self.gradients(video, cls, bar)
            return grads, {}
        total = torch.zeros_like(video)
        n = self.evaluations()
        if self.gradient == 'smoothgrad':
            chunk = self._chunk
            whole = video if chunk is None else chunk.video[index]
            first = 0 if chunk is None else chunk.start
            std = self.noise_level * float(whole.max() - whole.min())
            for start, stop in batches(n, self.batch_size):
                noise = torch.stack([torch.stack([
                    self._noise(first + v, i, video.shape[2:])
                    for v in range(video.shape[1])])
                    for i in range(start, stop)]).to(video) * std
                grads, _ = self.gradients(video + noise, cls)
                total += grads.sum(0, keepdim=True)
                bar.update(stop - start)
            return total / n, {}
        alphas = (torch.arange(n, device=video.device, dtype=video.dtype)
                  + 0.5) / n
        for start, stop in batches(n, self.batch_size):
            a = alphas[start:stop].view(-1, *([1] * (video.dim() - 1)))
            grads, _ = self.gradients(a * video, cls)
            total += grads.sum(0, keepdim=True)
            bar.update(stop - start)
        return video * total / n, {}

    def _noise(self, view: int, copy: int, shape) -> Tensor:
        seed = ((self.seed * 1000003 + view) * 1000003 + copy) % 2 ** 63
        return torch.randn(shape, generator=torch.Generator().manual_seed(
            seed))

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        result = super()._attribute(inputs, target, data_samples)
        attr = result.extras.pop('attributions')  # [B, V, C, T, H, W]
        g = reduce_channels(attr, self.reduction).float()
        if self.positive:
            g = g.clamp_min(0)
        video = self.adapter.to_video(inputs).detach()
        labels = torch.zeros(g.shape, dtype=torch.long, device=g.device)
        raw = torch.zeros_like(g)
        for b in range(g.shape[0]):
            for v in range(g.shape[1]):
                labels[b, v] = self.segments(video[b, v])
                raw[b, v] = segment_means(g[b, v], labels[b, v])
        extras = dict(result.extras, segments=labels, gradients=g)
        return Attribution(raw, result.scores, result.targets,
                           extras=extras, probs=result.probs)
