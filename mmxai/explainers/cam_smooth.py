"""Smooth Grad-CAM++ on space-time (Omeiza et al. 2019)."""
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .cam_gradient import _CAMFamily, _sum_dims
from .gradcam import DENOMINATORS
from .targets import TargetSpec


@EXPLAINERS.register_module()
class SmoothGradCAMPlusPlus(_CAMFamily):
    """Smooth Grad-CAM++ (Omeiza et al. 2019, arXiv 1908.01224).

    Grad-CAM++ with the gradient powers averaged over ``N`` noisy copies
    ``x + d_m``, ``d_m ~ N(0, std^2)`` in the preprocessed input space:
    ``D_p = 1/N sum_m g_m^p``,
    ``alpha = D_2 / (2 D_2 + D_3 sum_{thw} A)`` (``denominator='paper'``,
    as mmxai's Grad-CAM++) or ``/ (2 D_2 + sum_{thw} A D_3)``
    (``'sum_ag3'``, torch-cam's), 0 where the denominator is 0;
    ``w_k = sum_{thw} alpha ReLU(D_1)``, ``M = ReLU(sum_k w_k A_k)`` with
    ``A`` the clean input's activations ``[B, V, K, t, h, w]``; upsampled
    trilinearly to ``(T, H, W)``. ``weighting='temporal'``: the sums over
    ``(h, w)`` per feature time step. The numerator follows torch-cam's
    correction (``D_2``; the paper prints ``D_1``). Deviations from
    torch-cam: it weighs ``ReLU`` of the last sample's gradient and combines
    with the last noisy copy's activations; mmxai uses the mean gradient
    and the clean activations (the same with one sample, tested). Noise
    is drawn per view from a generator seeded by ``(seed, view)``, so view
    chunks do not change it; one view: the stream of
    ``torch.manual_seed(seed)``. Cost: ``N + 1`` forwards and backwards
    from the target layers.

    Args:
        num_samples: noisy copies ``N`` (4, torch-cam's default).
        std: noise standard deviation in preprocessed units (0.3).
        seed: noise seed.
        denominator: ``'paper'`` or ``'sum_ag3'``.
    """
    global_channel_weights = True


    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 weighting: str = 'global', relu: bool = True,
                 num_samples: int = 4, std: float = 0.3, seed: int = 0,
                 denominator: str = 'paper', **kwargs):
        super().__init__(model, target_layers=target_layers,
                         weighting=weighting, relu=relu, **kwargs)
        if denominator not in DENOMINATORS:
            raise MMXAIError(f"unknown denominator '{denominator}': use one "
                             f'of {", ".join(DENOMINATORS)}')
        if not isinstance(num_samples, int) or num_samples < 1:
            raise MMXAIError(f'{self.name}: num_samples must be a whole '
                             f'number >= 1, got {num_samples!r}')
        self.num_samples = num_samples
        self.std = float(std)
        self.seed = int(seed)
        self.denominator = denominator

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), num_samples=self.num_samples,
                    std=self.std, seed=self.seed,
                    denominator=self.denominator)

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        adapter = self.adapter
        clean, scores, targets = self.layer_grids(inputs, target,
                                                  data_samples)
        probs = self._probs
        video = adapter.to_video(inputs)
        chunk = getattr(self, '_chunk', None)
        first = chunk.start if chunk is not None else 0
        gens = []
        for j in range(video.shape[1]):
            gen = torch.Generator(device=video.device)
            gen.manual_seed(self.seed + 104729 * (first + j))
            gens.append(gen)
        sums = {name: [0, 0, 0] for name in clean}
        for _ in range(self.num_samples):
            noisy = video.clone()
            for j, gen in enumerate(gens):
                noisy[:, j] += self.std * torch.randn(
                    (video.shape[0], *video.shape[2:]), generator=gen,
                    device=video.device, dtype=video.dtype)
            grids, _, _ = self.layer_grids(adapter.from_video(noisy),
                                           targets, None)
            for name, (_, g) in grids.items():
                for p in range(3):
                    sums[name][p] = sums[name][p] + g.pow(p + 1)
        dims = _sum_dims(self.weighting)
        cams = {}
        for name, (a, _) in clean.items():
            d1, d2, d3 = (s / self.num_samples for s in sums[name])
            if self.denominator == 'paper':
                denom = 2 * d2 + d3 * a.sum(dim=dims, keepdim=True)
            else:
                denom = 2 * d2 + (a * d3).sum(dim=dims, keepdim=True)
            alpha = torch.where(denom != 0, d2 / torch.where(
                denom != 0, denom, torch.ones_like(denom)),
                torch.zeros_like(d2))
            w = (alpha * F.relu(d1)).sum(dim=dims, keepdim=True)
            cam = (w * a).sum(2)
            cams[name] = F.relu(cam) if self.relu else cam
        self._probs = probs
        layer_maps = {name: adapter.upsample(cam, name, inputs)
                      for name, cam in cams.items()}
        return Attribution(self.fuse(cams, inputs), scores.detach(), targets,
                           layer_maps=layer_maps, probs=probs)
