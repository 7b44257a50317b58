"""Grad-CAM and Grad-CAM++ for spatio-temporal recognizers.

Gradients come from ``torch.autograd.grad`` w.r.t. the captured layer
outputs: no module backward hooks (they break with in-place ReLU), no
parameter ``.grad`` touched, and back-propagation stops at the target layer,
so the cost is one forward plus the backward of the layers above it.
"""
import contextlib
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..utils.hooks import capture_activations
from ..utils.layers import get_layer
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .targets import TargetSpec, pred_basis, resolve_targets

WEIGHTINGS = ('global', 'temporal')


def non_pooling_head(model: nn.Module) -> Optional[str]:
    """A description of ``model``'s head when it keeps where a feature is
    (a grid pool: ``spatial_pool='grid'``, mmxai's ``CausalMSTCNHead``),
    else None. Grad-CAM's channel weights ``mean_{h,w} dS/dA_k`` stand for
    the head's weights only behind a global average pool."""
    head = getattr(model, 'cls_head', None)
    if getattr(head, 'spatial_pool', None) == 'grid':
        return f"{type(head).__name__}(spatial_pool='grid')"
    return None


def warn_non_pooling_head(model: nn.Module, method: str) -> None:
    """One MMLogger warning when ``method`` (a mean-gradient CAM) meets a
    head that does not pool globally."""
    head = non_pooling_head(model)
    if head is None:
        return
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().warning(
        f'{method}: the head {head} keeps the spatial grid, so one weight '
        'per channel from the gradients over the whole feature map does '
        'not stand for it and the map can miss the evidence '
        '(docs/surgical.md); hirescam, layercam or the input-gradient '
        'methods fit such heads')


@EXPLAINERS.register_module()
class GradCAM(BaseExplainer):
    """Grad-CAM (Selvaraju et al.) extended to space-time.

    ``weighting='global'`` (default): one weight per channel,
    ``w_k = mean_{t,h,w} dS_c/dA_k``, the direct 3D extension of the paper;
    its maps compare frames on one scale. ``'temporal'``: one weight vector
    per feature time step, ``w_{k,t} = mean_{h,w} dS_c/dA_{k,t}``, as in
    SlowFast's visualiser and MMAction2's built-in port. Global is the
    default: it is the paper's definition applied to the whole feature
    volume, every frame is weighed by the same channel weights (so frames
    compare on one scale), and for a GAP + linear head it reduces to the CAM
    identity. ``M = ReLU(sum_k w_k A_k)``, then a
    trilinear upsampling to the input ``(T, H, W)``.

    ``S_c`` is the pre-softmax class score, averaged over views as
    ``predict`` does. Several target layers (e.g. one per SlowFast pathway)
    give one map each (``Explanation.layer_maps``); the fused map is the sum
    of their upsampled raw maps.

    Args:
        model: the recognizer.
        target_layers: dotted module names (default: the adapter's).
        weighting: ``'global'`` or ``'temporal'``.
        relu: apply the final ReLU (disable to see negative evidence).
    """

    views_separable = True
    reports_probs = True
    #: one weight per channel from the gradients over the whole map (a
    #: warning on heads that keep the grid: :func:`non_pooling_head`)
    global_channel_weights = True

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 weighting: str = 'global', relu: bool = True, **kwargs):
        super().__init__(model, **kwargs)
        if weighting not in WEIGHTINGS:
            raise MMXAIError(f"unknown weighting '{weighting}': use one of "
                             f'{", ".join(WEIGHTINGS)}')
        if isinstance(target_layers, str) or not isinstance(
                target_layers, (list, tuple, type(None))):
            target_layers = [target_layers]  # a number: refused by get_layer
        self.target_layers: List[str] = list(
            target_layers or self.adapter.default_target_layers())
        for name in self.target_layers:  # fail early, with suggestions
            get_layer(self.model, name)
        self.weighting = weighting
        self.relu = relu
        if self.global_channel_weights:
            warn_non_pooling_head(self.model, self.name)

    def settings(self) -> Dict[str, Any]:
        return dict(target_layers=self.target_layers,
                    weighting=self.weighting, relu=self.relu)

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        """``[B, V, C, t, h, w]`` activations/gradients -> weights
        broadcastable to them."""
        dims = (3, 4, 5) if self.weighting == 'global' else (4, 5)
        return grads.mean(dim=dims, keepdim=True)

    def _layer_gradients(self, inputs: Tensor, target: TargetSpec,
                         data_samples: Optional[Sequence], leaves: bool):
        """Target-layer outputs, ``dS_c/dA`` of each, scores, targets.

        ``leaves``: parameters frozen and the input without grad, so the
        graph starts at the target layers (their outputs become leaves);
        otherwise the graph runs from the input."""
        adapter = self.adapter
        with capture_activations(self.model, self.target_layers,
                                 leaves=leaves) as store, \
                torch.enable_grad(), contextlib.ExitStack() as stack:
            if leaves:
                stack.enter_context(frozen_parameters(self.model))
                x = inputs.detach()
            else:
                x = inputs.detach().requires_grad_(True)
            scores, probs = adapter.scores_and_probs(x)
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(adapter, probs))
            self._probs = probs.detach()
            acts = store.collect()
            missing = [n for n in self.target_layers if n not in acts]
            if missing:
                raise MMXAIError(
                    f"layer '{missing[0]}' was not run by the forward pass; "
                    'choose a layer on the path to the classifier')
            tensors = [_as_tensor(n, acts[n]) for n in self.target_layers]
            if leaves and not all(t.requires_grad for t in tensors):
                return tensors, [None] * len(tensors), scores, targets
            objective = scores.gather(1, targets.view(-1, 1)).sum()
            grads = torch.autograd.grad(objective, tensors,
                                        allow_unused=True)
        return tensors, grads, scores, targets

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        adapter = self.adapter
        tensors, grads, scores, targets = self._layer_gradients(
            inputs, target, data_samples, leaves=True)
        if any(g is None for g in grads):  # e.g. token tuples: full graph
            tensors, grads, scores, targets = self._layer_gradients(
                inputs, target, data_samples, leaves=False)
        layer_maps, raw = {}, None
        for name, act, grad in zip(self.target_layers, tensors, grads):
            if grad is None:
                raise MMXAIError(
                    f"layer '{name}' receives no gradient from the class "
                    'score; choose a layer on the path to the classifier')
            a = adapter.activation_grid(name, act.detach(), inputs)
            g = adapter.activation_grid(name, grad, inputs)
            cam = (self.channel_weights(a, g) * a).sum(dim=2)
            if self.relu:
                cam = F.relu(cam)
            layer_maps[name] = adapter.upsample(cam, name, inputs)
            full = _to_input_time(layer_maps[name], adapter, inputs)
            raw = full if raw is None else raw + full
        return Attribution(raw, scores.detach(), targets,
                           layer_maps=layer_maps, probs=self._probs)


#: Grad-CAM++ denominators: ``'paper'`` ``2 g^2 + g^3 sum A`` (Eq. 19 and
#: the authors' code), ``'sum_ag3'`` ``2 g^2 + sum A g^3`` (a common
#: variant; the same at a GAP + linear head's input).
DENOMINATORS = ('paper', 'sum_ag3')


@EXPLAINERS.register_module()
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19) with sums over (t, h, w).

    ``alpha = g^2 / (2 g^2 + g^3 sum_{thw} A)`` (0 where the denominator is
    0), ``w_k = sum_{thw} alpha ReLU(g)``, as in the paper and the authors'
    code (``global_sum``). With ``weighting='temporal'`` the sums run over
    (h, w) per time step instead. As in the authors' code, higher-order
    derivatives are replaced by powers of the first-order gradient (exact
    for an exponential of the score); the authors' later renormalisation of
    alpha is not applied (Eq. 19 has none).

    Args:
        denominator: ``'paper'`` (default, above) or ``'sum_ag3'``:
            ``2 g^2 + sum_{thw} A g^3``, the sum taken of the product. The
            two agree where ``g`` is constant over (t, h, w) (a GAP + linear
            head's input) and differ at inner layers.
    """

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 weighting: str = 'global', relu: bool = True,
                 denominator: str = 'paper', **kwargs):
        super().__init__(model, target_layers=target_layers,
                         weighting=weighting, relu=relu, **kwargs)
        if denominator not in DENOMINATORS:
            raise MMXAIError(f"unknown denominator '{denominator}': use one "
                             f'of {", ".join(DENOMINATORS)}')
        self.denominator = denominator

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), denominator=self.denominator)

    def channel_weights(self, acts: Tensor, grads: Tensor) -> Tensor:
        dims = (3, 4, 5) if self.weighting == 'global' else (4, 5)
        g2 = grads.pow(2)
        g3 = grads.pow(3)
        if self.denominator == 'paper':
            denom = 2 * g2 + g3 * acts.sum(dim=dims, keepdim=True)
        else:
            denom = 2 * g2 + (acts * g3).sum(dim=dims, keepdim=True)
        alpha = torch.where(denom != 0, g2 / torch.where(
            denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g2))
        return (alpha * F.relu(grads)).sum(dim=dims, keepdim=True)


def _as_tensor(name: str, act) -> Tensor:
    if isinstance(act, Tensor):
        return act
    if isinstance(act, (tuple, list)) and act and isinstance(act[0], Tensor):
        return act[0]
    raise MMXAIError(f"layer '{name}' does not output a tensor")


def _to_input_time(layer_map: Tensor, adapter, inputs: Tensor) -> Tensor:
    """A layer map on its own time base -> the input's ``[B, V, T, H, W]``."""
    _, _, t, h, w = adapter.input_shape(inputs)
    if layer_map.shape[2:] == (t, h, w):
        return layer_map
    from ..adapters.base import upsample_maps
    return upsample_maps(layer_map, (t, h, w))
