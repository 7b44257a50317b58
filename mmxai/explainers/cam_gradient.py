"""Cheap gradient CAMs on space-time: XGrad-CAM, Layer-CAM (multi-layer
fusion), HiResCAM, Grad-CAM element-wise.

All reuse :class:`~.gradcam.GradCAM`'s machinery: target layers, the
activations ``A`` and gradients ``g = dS_c/dA`` of one forward and the
backward of the layers above the target layers only (the graph starts at
the target layers), the adapter's activation grid ``[B, V, K, t, h, w]``
(3D CNNs as they are; Recognizer2D frames regrouped in time; SlowFast one
layer per pathway; transformers' patch tokens as a ``(t, h, w)`` grid
whose "channels" are the embedding dimensions) and the view chunks of
``max_views_per_pass``. They differ only in how ``g`` and ``A`` combine
into a map ``M [B, V, t, h, w]`` at the layer's resolution, which is then
upsampled trilinearly to the input's ``(T, H, W)`` (SlowFast: to the
pathway's frames, then to the input's).
"""
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .gradcam import GradCAM, _to_input_time
from .targets import TargetSpec


class _CAMFamily(GradCAM):
    """Grad-CAM's machinery with a per-method combination of ``A`` and
    ``g`` (:meth:`layer_cam`) and of several layers (:meth:`fuse`)."""
    global_channel_weights = False

    #: The map is element-wise in ``g``: ``weighting`` does not apply.
    elementwise = False

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, **kwargs):
        if self.elementwise and kwargs.get('weighting', 'global') != 'global':
            raise MMXAIError(
                f"{self.name}: 'weighting' does not apply (the weights are "
                'per position, not per channel)')
        super().__init__(model, target_layers=target_layers, relu=relu,
                         **kwargs)

    def settings(self) -> Dict[str, Any]:
        out = super().settings()
        if self.elementwise:
            out.pop('weighting', None)
        return out

    def layer_cam(self, acts: Tensor, grads: Tensor) -> Tensor:
        """``[B, V, K, t, h, w]`` activations and gradients -> the layer's
        map ``[B, V, t, h, w]`` (before the final ReLU)."""
        return (self.channel_weights(acts, grads) * acts).sum(dim=2)

    def fuse(self, cams: Dict[str, Tensor], inputs: Tensor) -> Tensor:
        """Per-layer maps at their own resolution -> the fused raw map
        ``[B, V, T, H, W]``: the sum of the upsampled maps (Grad-CAM's)."""
        raw = None
        for name, cam in cams.items():
            full = _to_input_time(self.adapter.upsample(cam, name, inputs),
                                  self.adapter, inputs)
            raw = full if raw is None else raw + full
        return raw

    def layer_grids(self, inputs: Tensor, target: TargetSpec,
                    data_samples: Optional[Sequence]):
        """``{layer: (A, g)}`` as activation grids, scores, targets."""
        adapter = self.adapter
        tensors, grads, scores, targets = self._layer_gradients(
            inputs, target, data_samples, leaves=True)
        if any(g is None for g in grads):  # e.g. token tuples: full graph
            tensors, grads, scores, targets = self._layer_gradients(
                inputs, target, data_samples, leaves=False)
        grids = {}
        for name, act, grad in zip(self.target_layers, tensors, grads):
            if grad is None:
                raise MMXAIError(
                    f"layer '{name}' receives no gradient from the class "
                    'score; choose a layer on the path to the classifier')
            grids[name] = (adapter.activation_grid(name, act.detach(), inputs),
                           adapter.activation_grid(name, grad.detach(),
                                                   inputs))
        return grids, scores, targets

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        grids, scores, targets = self.layer_grids(inputs, target,
                                                  data_samples)
        cams = {}
        for name, (a, g) in grids.items():
            cam = self.layer_cam(a, g)
            cams[name] = F.relu(cam) if self.relu else cam
        layer_maps = {name: self.adapter.upsample(cam, name, inputs)
                      for name, cam in cams.items()}
        return Attribution(self.fuse(cams, inputs), scores.detach(), targets,
                           layer_maps=layer_maps, probs=self._probs)


def _sum_dims(weighting: str):
    return (3, 4, 5) if weighting == 'global' else (4, 5)


@EXPLAINERS.register_module()
class XGradCAM(_CAMFamily):
    """XGrad-CAM (Fu et al. 2020, "Axiom-based Grad-CAM").

    ``w_k = sum_{thw} (A_k / sum_{thw} A_k) * g_k`` (0 where
    ``sum_{thw} A_k = 0``), ``M = ReLU(sum_k w_k A_k)``; ``A``, ``g``
    ``[B, V, K, t, h, w]``, ``M [B, V, t, h, w]``, upsampled trilinearly
    to ``(T, H, W)``. Video: the paper's sums over ``(h, w)`` run over
    ``(t, h, w)`` (``weighting='global'``) or over ``(h, w)`` per feature
    time step (``'temporal'``). Like torch-cam and pytorch-grad-cam, the
    normaliser is the plain sum of ``A_k`` (the paper assumes ``A >= 0``,
    true after a ReLU; elsewhere a sum near 0 makes ``w_k`` large).
    """
    global_channel_weights = True


    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        dims = _sum_dims(self.weighting)
        total = acts.sum(dim=dims, keepdim=True)
        num = (acts * grads).sum(dim=dims, keepdim=True)
        return torch.where(total != 0, num / torch.where(
            total != 0, total, torch.ones_like(total)),
            torch.zeros_like(total))


@EXPLAINERS.register_module()
class HiResCAM(_CAMFamily):
    """HiResCAM (Draelos & Carin 2020).

    ``M = ReLU(sum_k g_k * A_k)``, element-wise over ``(t, h, w)`` (no
    averaging of the gradient); ``A``, ``g`` ``[B, V, K, t, h, w]``,
    ``M [B, V, t, h, w]``, upsampled trilinearly to ``(T, H, W)``.
    Identity (tested): where ``g`` is constant over ``(t, h, w)`` (a GAP +
    linear head's input) it equals Grad-CAM (``mean g = g``). ``relu=False``
    gives the paper's signed map. Video: positions are space-time cells.
    """
    elementwise = True

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return grads


@EXPLAINERS.register_module()
class GradCAMElementWise(_CAMFamily):
    """Grad-CAM element-wise (pytorch-grad-cam's ``GradCAMElementWise``).

    ``M = ReLU(sum_k ReLU(g_k * A_k))``: HiResCAM with the products
    clipped at 0 before the channel sum; ``[B, V, K, t, h, w]`` ->
    ``[B, V, t, h, w]``, upsampled trilinearly to ``(T, H, W)``. Video:
    positions are space-time cells.
    """
    elementwise = True

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        # ReLU(g A) = g [g A > 0] A, so the weight is g where g A > 0
        return grads * ((grads * acts) > 0).to(grads.dtype)


#: Layer-CAM fusions of several target layers.
FUSIONS = ('tanh_max', 'sum')


@EXPLAINERS.register_module()
class LayerCAM(_CAMFamily):
    """Layer-CAM (Jiang et al. 2021, IEEE TIP).

    ``M = ReLU(sum_k ReLU(g_k) * A_k)``, element-wise over ``(t, h, w)``;
    ``A``, ``g`` ``[B, V, K, t, h, w]``, ``M [B, V, t, h, w]``.

    Several target layers (e.g. ``backbone.layer2 ... layer4``) are fused
    as in the paper (Eq. 9) and torch-cam: each layer's map is divided by
    its maximum over ``(t, h, w)`` per view, scaled by
    ``tanh(gamma * M / max M)`` (``gamma=2``), upsampled trilinearly to the
    input's ``(T, H, W)`` and the layers combined by an element-wise
    maximum (``fusion='tanh_max'``; ``'sum'``: Grad-CAM's sum of the raw
    upsampled maps). Deviations: the paper scales the shallow layers only;
    like torch-cam, every layer is scaled (a monotone map, so each layer's
    own ranking is kept). Video: torch-cam fuses at the largest layer's
    resolution, mmxai at the input's (SlowFast pathways: each brought to
    the input's frames first), so the two agree where the layers share a
    resolution. With one layer the map is the unscaled ``M``.
    """
    elementwise = True

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, fusion: str = 'tanh_max',
                 gamma: float = 2.0, **kwargs):
        super().__init__(model, target_layers=target_layers, relu=relu,
                         **kwargs)
        if fusion not in FUSIONS:
            raise MMXAIError(f"unknown fusion '{fusion}': use one of "
                             f'{", ".join(FUSIONS)}')
        self.fusion = fusion
        self.gamma = float(gamma)

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), fusion=self.fusion,
                    gamma=self.gamma)

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        return F.relu(grads)

    def fuse(self, cams: Dict[str, Tensor], inputs: Tensor) -> Tensor:
        if len(cams) == 1 or self.fusion == 'sum':
            return super().fuse(cams, inputs)
        fused = None
        for name, cam in cams.items():
            peak = cam.flatten(2).amax(-1).view(*cam.shape[:2], 1, 1, 1)
            scaled = torch.tanh(self.gamma * cam / torch.where(
                peak > 0, peak, torch.ones_like(peak)))
            full = _to_input_time(self.adapter.upsample(scaled, name, inputs),
                                  self.adapter, inputs)
            fused = full if fused is None else torch.maximum(fused, full)
        return fused
