"""FEM, the Feature Explanation Method (Fuad et al. 2020, "Features
Understanding in 3D CNNs for Actions Recognition in Video", IPTA), on
space-time.

Class-agnostic and gradient-free in its definition: per channel ``k`` of
the target layer's activations ``A [B, V, K, t, h, w]``,
``mu_k = mean A_k`` and ``sigma_k = std A_k`` (population std) over the
positions, the binary mask ``M_k = 1[A_k >= mu_k + sigma * sigma_k]``
(``sigma = 2``, the paper's k-sigma rule), and the map
``FEM = sum_k mu_k M_k`` ``[B, V, t, h, w]``, upsampled trilinearly to
``(T, H, W)``. The paper's 3D CNNs threshold the whole space-time feature
volume of a channel (``weighting='global'``: statistics over
``(t, h, w)``); ``'temporal'`` takes them per feature time step over
``(h, w)``, as the 2D method does frame by frame.
"""
from typing import Any, Dict, Optional, Sequence

from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .cam_gradient import _CAMFamily, _sum_dims


def fem_map(acts: Tensor, sigma: float = 2.0,
            weighting: str = 'global') -> Tensor:
    """``[B, V, K, t, h, w]`` -> ``[B, V, t, h, w]``:
    ``sum_k mu_k 1[A_k >= mu_k + sigma std_k]`` (statistics over
    ``(t, h, w)`` or, ``'temporal'``, over ``(h, w)`` per time step)."""
    dims = _sum_dims(weighting)
    mu = acts.mean(dim=dims, keepdim=True)
    std = acts.std(dim=dims, keepdim=True, unbiased=False)
    mask = (acts >= mu + sigma * std).to(acts.dtype)
    return (mu * mask).sum(dim=2)


@EXPLAINERS.register_module()
class FEM(_CAMFamily):
    """FEM (see the module docstring): ``sum_k mu_k 1[A_k >= mu_k +
    sigma std_k]``; class-agnostic (the target only labels the record).
    One forward and the backward of the layers above the target layer are
    run as for the other CAMs (the gradient is unused).

    Args:
        sigma: the threshold in standard deviations above the mean (2).
        weighting: ``'global'`` (statistics over ``(t, h, w)``) or
            ``'temporal'`` (over ``(h, w)`` per feature time step).
    """
    elementwise = True

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, sigma: float = 2.0,
                 weighting: str = 'global', **kwargs):
        if weighting not in ('global', 'temporal'):
            raise MMXAIError(f"fem: unknown weighting '{weighting}': use "
                             "'global' or 'temporal'")
        super().__init__(model, target_layers=target_layers, relu=relu,
                         **kwargs)
        self.sigma = float(sigma)
        self.fem_weighting = weighting

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), sigma=self.sigma,
                    weighting=self.fem_weighting)

    def layer_cam(self, acts: Tensor, grads: Tensor) -> Tensor:
        return fem_map(acts, self.sigma, self.fem_weighting)
