"""Finer-CAM (Zhang et al. 2025, "Finer-CAM: Spotting the Difference
Reveals Finer Details for Visual Explanation", CVPR; arXiv 2501.11309) on
space-time.

A base gradient CAM (Grad-CAM, Grad-CAM++ or Layer-CAM) explains the
contrast ``y = s_c - gamma / R sum_{r=1..R} s_{d_r}`` instead of the class
score ``s_c``: the references ``d_r`` are, per clip, the ``R`` classes
whose (view-averaged, pre-softmax) scores lie closest to ``s_c`` (the
target excluded; ``R = num_references`` capped at ``K - 1``), or given
explicitly; ``gamma = 0.6`` and ``R = 3`` as torch-cam's ``FinerCAM``.
The contrast is linear in the scores, so it is the callable target
``f(s) = w . s`` (``w = e_c - gamma / R sum_r e_{d_r}``) of the base method
(:class:`.targets.TargetOutputAdapter`: per view, averaged over views,
exactly ``f`` of the view-averaged scores). Cost: one forward without
gradients to pick the references, then the base method; clips are
explained one at a time (each has its own ``w``).
"""
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import MMXAIError, TargetError, UnsupportedModelError
from ..registry import EXPLAINERS
from ..utils.model_state import preserved_model_state
from .base import BaseExplainer
from .cam_gradient import LayerCAM
from .explanation import Explanation
from .gradcam import GradCAM, GradCAMPlusPlus
from .options import check_choice
from .targets import (TargetSpec, describe_target, is_target_function,
                      pred_basis, resolve_targets)

#: Base methods Finer-CAM is defined on (torch-cam's set).
FINER_BASES = ('gradcam', 'gradcam++', 'layercam')
_BASE_KEYS = ('adapter', 'frames_per_view', 'max_views_per_pass',
              'max_memory', 'normalize')


def contrast_weights(scores: Tensor, targets: Tensor, gamma: float,
                     num_references: int,
                     references: Optional[Sequence[int]] = None):
    """``scores [B, K]``, ``targets [B]`` -> ``(w [B, K], refs [B, R])``:
    ``w = e_c - gamma / R sum_r e_{d_r}``, ``d_r`` the ``R`` classes whose
    scores are closest to ``s_c`` (or ``references``, the same for every
    clip)."""
    b, k = scores.shape
    tgt = targets.view(-1, 1).to(scores.device)
    if references is not None:
        refs = torch.as_tensor(list(references), dtype=torch.long,
                               device=scores.device).view(1, -1).repeat(b, 1)
        if (refs == tgt).any():
            raise TargetError('finer_cam: a reference class equals the '
                              'target class')
    else:
        dist = (scores - scores.gather(1, tgt)).abs()
        dist.scatter_(1, tgt, float('inf'))
        refs = dist.topk(min(num_references, k - 1), dim=1,
                         largest=False).indices
    w = torch.zeros_like(scores)
    w.scatter_(1, tgt, 1.0)
    w.scatter_add_(1, refs, torch.full(refs.shape, -gamma / refs.shape[1],
                                       dtype=w.dtype, device=w.device))
    return w, refs


@EXPLAINERS.register_module()
class FinerCAM(BaseExplainer):
    """Finer-CAM (see the module docstring).

    Args:
        base_method: ``'gradcam'``, ``'gradcam++'`` or ``'layercam'``.
        gamma: the references' weight (``>= 0``; 0 is the base method).
        num_references: automatic references per clip (closest scores).
        references: class indices to compare with instead (every clip).
        **kwargs: the base method's options (``target_layers``, ...).
    """
    callable_targets = False
    #: the base methods whose options are passed on (builder checks)
    options_of = (GradCAM, GradCAMPlusPlus, LayerCAM)

    def __init__(self, model: nn.Module, base_method: str = 'gradcam',
                 gamma: float = 0.6, num_references: int = 3,
                 references: Optional[Sequence[int]] = None, **kwargs):
        from .builder import build_explainer
        check_choice('base_method', base_method, FINER_BASES)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) \
                or not gamma >= 0:
            raise MMXAIError(f'finer_cam: gamma must be a number >= 0, got '
                             f'{gamma!r}')
        if isinstance(num_references, bool) or not isinstance(
                num_references, int) or num_references < 1:
            raise MMXAIError('finer_cam: num_references must be a whole '
                             f'number >= 1, got {num_references!r}')
        super().__init__(model, **{k: kwargs[k] for k in _BASE_KEYS
                                   if k in kwargs})
        # the base method checks its own options (one line if unknown)
        self.base = build_explainer(base_method, model, **kwargs)
        self.base_method = base_method
        self.gamma, self.num_references = float(gamma), num_references
        self.references = None if references is None else [
            int(r) for r in references]

    def settings(self) -> Dict[str, Any]:
        return dict(self.base.settings(), base_method=self.base_method,
                    gamma=self.gamma, num_references=self.num_references,
                    references=self.references)

    def attribute(self, inputs: Tensor, target: TargetSpec = 'pred',
                  data_samples: Optional[Sequence] = None) -> Explanation:
        """Maps ``[B, V, T, H, W]`` of the contrast of each clip's target
        class with its references; ``targets`` the classes, ``scores`` the
        class scores ``[B, K]``, ``extras['references'] [B, R]`` and
        ``extras['contrast'] [B]`` (the explained value)."""
        if is_target_function(target):
            raise TargetError(
                'finer_cam contrasts a class with its nearest classes; a '
                'callable target is a contrast already: use gradcam with it')
        with torch.no_grad(), preserved_model_state(self.model):
            self.model.eval()
            per_view = self.adapter.scores(inputs, per_view=True)  # [B,S,K]
        scores = per_view.mean(1)
        if scores.shape[-1] < 2:
            raise UnsupportedModelError(
                'finer_cam needs at least two classes to compare')
        probs = per_view.float().softmax(-1).mean(1)
        targets = resolve_targets(target, scores, data_samples,
                                  pred_basis(self.adapter, probs))
        w, refs = contrast_weights(scores, targets, self.gamma,
                                   self.num_references, self.references)
        parts = []
        for b in range(scores.shape[0]):
            wb = w[b:b + 1]

            def finer_contrast(s: Tensor, wb=wb) -> Tensor:
                return (s * wb.to(s)).sum(-1)

            parts.append(self.base.attribute(
                inputs[b:b + 1], finer_contrast,
                None if data_samples is None else data_samples[b:b + 1]))
        layers = parts[0].layer_maps.keys()
        settings = dict(parts[0].settings, **self.settings())
        settings['target'] = describe_target(target)
        return Explanation(
            maps=torch.cat([p.maps for p in parts]),
            raw_maps=torch.cat([p.raw_maps for p in parts]),
            targets=targets, scores=scores, method=self.name,
            settings=settings,
            layer_maps={n: torch.cat([p.layer_maps[n] for p in parts])
                        for n in layers},
            extras=dict(references=refs,
                        contrast=torch.cat([p.scores[:, 0] for p in parts])),
            mean_probs=probs)

    __call__ = attribute
