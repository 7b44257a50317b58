"""Saliency Tubes (Stergiou et al., ICIP 2019): CAM generalised to 3D."""
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import EXPLAINERS
from ..utils.hooks import capture_activations
from .attribution import Attribution
from .base import BaseExplainer
from .gradcam import _to_input_time
from .targets import (TargetOutputAdapter, TargetSpec, pred_basis,
                      resolve_targets)

#: Heads that are global average pooling followed by one linear layer,
#: where the class activation map is exact. Name -> classifier attribute.
LINEAR_GAP_HEADS = {
    'I3DHead': 'fc_cls',
    'TSNHead': 'fc_cls',
    'TSMHead': 'fc_cls',
    'TPNHead': 'fc_cls',
    'SlowFastHead': 'fc_cls',
}


@EXPLAINERS.register_module()
class SaliencyTubes(BaseExplainer):
    """``M_c(t,h,w) = sum_k W[c,k] A_k(t,h,w)`` on the head's input features.

    One forward pass, no gradients. As in the paper there is no ReLU and no
    bias, so for a GAP + linear head ``mean_{t,h,w} M_c = S_c - b_c`` at
    feature resolution (per view). Maps are upsampled trilinearly to the
    input and min-max normalised (as the authors' PyTorch code does).

    Defined only for heads that are global average pooling + one linear
    layer (``LINEAR_GAP_HEADS``); X3D's two-layer head or a transformer's
    token head raise :class:`UnsupportedModelError`.

    A callable target ``f`` of the scores weighs view ``v``'s features by
    ``w_v = (df/ds)(s_v) W``, the gradient of ``f(s_v)`` w.r.t. the pooled
    features (exact for an ``f`` linear in the scores: ``f = a . s`` gives
    ``sum_c a_c M_c``).
    """

    views_separable = True
    reports_probs = True

    def __init__(self, model: nn.Module, **kwargs):
        super().__init__(model, **kwargs)
        head = self.model.cls_head
        kind = type(head).__name__
        if kind in LINEAR_GAP_HEADS and getattr(head, 'avg_pool',
                                                None) is None:
            raise UnsupportedModelError(
                f'Saliency Tubes needs global average pooling before the '
                f'classifier; this {kind} has none (spatial_type=None: its '
                'input is already a feature vector, e.g. C3D fc7); use gradcam')
        if kind not in LINEAR_GAP_HEADS:
            raise UnsupportedModelError(
                f'Saliency Tubes needs a global-average-pooling + linear '
                f'head ({", ".join(sorted(LINEAR_GAP_HEADS))}); {kind} is '
                'not one (use gradcam instead)')
        self.fc = getattr(head, LINEAR_GAP_HEADS[kind])

    def settings(self) -> Dict[str, Any]:
        return dict(layer='cls_head input')

    def class_weights(self, targets: Tensor) -> Tensor:
        """``[B, C]`` classifier weights of each sample's target class."""
        return self.fc.weight[targets]

    def function_weights(self, per_view: Tensor, views: int) -> Tensor:
        """``[B, V, C]`` weights of a callable target: ``(df/ds)(s_v) W``
        at each view's pre-softmax scores ``s_v`` (``per_view``
        ``[B, V, K]``)."""
        if per_view.shape[1] != views:
            raise UnsupportedModelError(
                f'saliency_tubes: {per_view.shape[1]} per-view scores for '
                f'{views} views of head features: use an output index or '
                'gradcam')
        with torch.enable_grad():
            s = per_view.float().clone().requires_grad_(True)
            value = self.adapter.target_function(s.flatten(0, 1))
            jac = torch.autograd.grad(value.sum(), s)[0]  # [B, V, K]
        return jac @ self.fc.weight.detach().float()

    def _function_scores(self, per_view: Tensor) -> Tensor:
        """``[B, 1]`` ``F = 1/V sum_v f(s_v)``, scaled as the adapter's
        scores are in a view chunk (its share of the views)."""
        value = self.adapter.target_function(per_view.flatten(0, 1).float())
        chunk = self._chunk
        share = 1.0 if chunk is None else \
            (chunk.stop - chunk.start) / chunk.video.shape[1]
        return value.view(*per_view.shape[:2], 1).mean(1) * share

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        adapter = self.adapter
        function = isinstance(adapter, TargetOutputAdapter)
        with capture_activations(self.model, ['cls_head'], pre=True) as store, \
                torch.inference_mode():
            if function:  # one forward: each view's class scores
                per_view = adapter.base.scores(inputs, per_view=True)
                scores = self._function_scores(per_view)
                probs = torch.ones_like(scores)
            else:
                scores, probs = adapter.scores_and_probs(inputs)
            feats = store.collect()['cls_head']
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(adapter, probs))
            parts = adapter.head_feature_parts(feats, inputs)
        if function:  # per view: the gradient of f through the classifier
            weights = self.function_weights(per_view.clone(),
                                            parts[0][1].shape[1])
        with torch.inference_mode():
            if not function:  # one class: the same weights for every view
                weights = self.class_weights(targets)[:, None].expand(
                    -1, parts[0][1].shape[1], -1)
            layer_maps, cams, raw, start = {}, {}, None, 0
            for name, grid in parts:  # split W by each part's channels
                stop = start + grid.shape[2]
                cam = torch.einsum('bvcthw,bvc->bvthw', grid,
                                   weights[..., start:stop].to(grid.dtype))
                start = stop
                cams[name] = cam
                layer_maps[name] = adapter.upsample(cam, name, inputs)
                full = _to_input_time(layer_maps[name], adapter, inputs)
                raw = full if raw is None else raw + full
            if start != weights.shape[-1]:
                raise UnsupportedModelError(
                    f'the head input has {start} channels but its classifier '
                    f'takes {weights.shape[-1]}')
        extras = {'feature_maps': cams['cls_head'] if list(cams) == [
            'cls_head'] else cams}
        return Attribution(raw, scores, targets, layer_maps=layer_maps,
                           extras=extras, probs=probs)
