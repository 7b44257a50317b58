"""Eigen-CAM and EigenGrad-CAM on space-time.

The map is the projection of each position's feature vector on the first
principal direction of the layer's features: ``X [P, K]`` (one row per
space-time position ``(t, h, w)`` of a view, ``P = t h w``, a column per
channel), centred over positions as in pytorch-grad-cam
(``get_2d_projection``), ``X = U S V^T``, ``M = ReLU(X V_1)`` reshaped to
``[B, V, t, h, w]`` and upsampled trilinearly to ``(T, H, W)``.

Video deviations: one component per view over the whole clip's space-time
positions (not per frame), so frames compare on one scale. The sign of a
singular vector is arbitrary (pytorch-grad-cam leaves it, so its ReLU can
erase the map): mmxai orients ``V_1`` so that the projection correlates
positively with the channel-summed features (``X 1``), i.e. the map is
high where the features are.
"""
import torch
from torch import Tensor

from ..registry import EXPLAINERS
from .cam_gradient import _CAMFamily


def first_component(grid: Tensor, center: bool = True) -> Tensor:
    """``[B, V, K, t, h, w]`` -> ``[B, V, t, h, w]``: the positions'
    projections on the first right-singular vector (sign oriented to the
    channel sum)."""
    b, v, k = grid.shape[:3]
    x = grid.flatten(3).transpose(2, 3).double()  # [B, V, P, K]
    if center:
        x = x - x.mean(dim=2, keepdim=True)
    x = torch.nan_to_num(x)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    proj = x @ vh[..., 0, :].unsqueeze(-1)  # [B, V, P, 1]
    proj = proj[..., 0]
    sign = torch.sign((proj * x.sum(-1)).sum(-1, keepdim=True))
    proj = proj * torch.where(sign == 0, torch.ones_like(sign), sign)
    return proj.to(grid.dtype).view(b, v, *grid.shape[3:])


@EXPLAINERS.register_module()
class EigenCAM(_CAMFamily):
    """Eigen-CAM (Muhammad & Yeasin 2020, IJCNN): the first principal
    component of the target layer's activations ``A [B, V, K, t, h, w]``
    (see the module docstring); class-agnostic (the target only labels
    the output). One forward and a backward are run as for Grad-CAM (the
    gradient is unused; EigenGrad-CAM needs it).

    Args:
        center: centre the features over positions first (pytorch-grad-cam;
            the paper's SVD is of the raw activations: ``center=False``).
    """
    elementwise = True

    def __init__(self, model, target_layers=None, relu: bool = True,
                 center: bool = True, **kwargs):
        super().__init__(model, target_layers=target_layers, relu=relu,
                         **kwargs)
        self.center = bool(center)

    def settings(self):
        return dict(super().settings(), center=self.center)

    def features(self, acts: Tensor, grads: Tensor) -> Tensor:
        return acts

    def layer_cam(self, acts: Tensor, grads: Tensor) -> Tensor:
        return first_component(self.features(acts, grads), self.center)


@EXPLAINERS.register_module()
class EigenGradCAM(EigenCAM):
    """EigenGrad-CAM (pytorch-grad-cam): Eigen-CAM of ``g * A`` (the
    gradient of the class score times the activation, element-wise),
    which makes it class-discriminative."""

    def features(self, acts: Tensor, grads: Tensor) -> Tensor:
        return acts * grads

