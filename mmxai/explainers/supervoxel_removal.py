"""LOCO and univariate predictors over spatio-temporal segments (REVEX,
Gaya-Morey et al. 2024).

Both score one clip per segment (plus one) and paint each segment's value
onto its voxels; segments and the removal value are those of
:mod:`.supervoxels` (3D SLIC or a regular grid; by default a 3D-Gaussian
blurred copy of the clip):

* LOCO (leave one covariate out): ``phi_s = f(x) - f(x without s)``, the
  score drop when segment ``s`` alone is removed (REVEX's ``single``
  perturbation with the ``difference`` explainer).
* Univariate predictors: ``phi_s = f(only s) - f(nothing)``, the score of
  the clip that keeps segment ``s`` alone (every other segment removed),
  minus that of the fully removed clip (REVEX's ``allbutone`` perturbation
  with the ``difference`` explainer, ``invert=True``).

On a model additive over segments both equal the segments' contributions;
they differ where segments interact (LOCO sees a segment in the context of
all the others, UP in the context of none).
"""
import torch
from torch import Tensor

from ..registry import EXPLAINERS
from .supervoxels import _SegmentBase

__all__ = ['SupervoxelLOCO', 'SupervoxelUnivariate']


@EXPLAINERS.register_module()
class SupervoxelLOCO(_SegmentBase):
    """LOCO over supervoxels: ``phi_s = f(x) - f(x with segment s
    removed)``, signed (negative: removing ``s`` raises the score).

    Cost per view: ``S`` forwards (one per segment, ``batch_size`` at a
    time) plus the clean clip's, which every perturbation method scores
    once. Options: those of :class:`~mmxai.explainers.SupervoxelLIME` but
    ``num_samples`` and ``seed`` (nothing is sampled).
    """

    def coalitions(self, n_seg: int) -> Tensor:
        return 1.0 - torch.eye(n_seg)

    def values(self, z: Tensor, y: Tensor, clean: Tensor) -> Tensor:
        return clean - y


@EXPLAINERS.register_module()
class SupervoxelUnivariate(_SegmentBase):
    """Univariate predictors over supervoxels: ``phi_s = f(only s kept) -
    f(all removed)``, signed (REVEX's "inverted difference": the empty
    clip is the reference, not the clean one).

    Cost per view: ``S + 1`` forwards (the fully removed clip, then one per
    segment, ``batch_size`` at a time) plus the clean clip's. Options:
    those of :class:`~mmxai.explainers.SupervoxelLIME` but ``num_samples``
    and ``seed``.
    """

    def coalitions(self, n_seg: int) -> Tensor:
        return torch.cat([torch.zeros(1, n_seg), torch.eye(n_seg)])

    def values(self, z: Tensor, y: Tensor, clean: Tensor) -> Tensor:
        return y[1:] - y[0]
