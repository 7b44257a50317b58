"""STAA, Spatio-Temporal Attention Attribution (Wang & Liu, arXiv
2411.00630, IEEE Access 2025): where and when a video transformer looks,
read from the attention of one forward pass (no gradients).

From the attention of block ``layer`` (default the last), heads averaged:

* spatial ``S[t, p]``: the attention the readout gives patch ``p`` of
  frame ``t``: the cls query's row (TimeSformer; divided attention: the
  spatial call of frame ``t``), or the mean / first query row (VideoMAE,
  as its head mean-pools or reads the first token);
* temporal ``tau[t]``: divided attention: the attention frame ``t``
  receives in the temporal call, averaged over patches and query frames;
  joint, space-only and VideoMAE (one attention over all tokens, or per
  frame with frames averaged by the readout): the spatial mass of the frame,
  ``sum_p S[t, p]``;
* ``STAA[t, p] = S[t, p] / sum_p' S[t, p'] * tau[t] / sum_t' tau[t']``
  (for one-attention models this is the readout row normalised to 1).

Optional post-processing (the paper's "dynamic thresholding" and
"attention focusing", described there without a formula here): values
below the ``threshold`` quantile of each view set to 0, then
``STAA ** focus`` renormalised. Off by default (the raw attribution).

Deviations: the paper's text beyond its abstract and a public
implementation were not available to check; the released pipeline code
seen (``DeepKondal/VideoXAI``, built on the author's XAIport) reads the
head-averaged last-layer attention of Hugging Face's TimeSformer, which is
what ``S`` is here, but indexes frames inconsistently, so ``tau`` follows
TimeSformer's own divided temporal attention instead.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import MMXAIError, UnsupportedModelError
from ..registry import EXPLAINERS
from .attention import record_attention
from .attribution import Attribution
from .base import BaseExplainer
from .legrad import (attention_blocks, key_grid, layer_indices,
                     token_layout, unsupported_reason)
from .targets import TargetSpec, pred_basis, resolve_targets


def staa_grid(calls: Sequence[Tuple[str, Tensor]], lay: Dict[str, Any],
              bv: int) -> Tuple[Tensor, Tensor, Tensor]:
    """STAA of one block from its attention calls ``(kind, probs [M, h, L,
    S])``: ``(map [B*V, t, h*w], spatial [B*V, t, h*w] (rows sum to 1),
    temporal [B*V, t] (sums to 1))``."""
    t = lay['t']
    spatial, temporal = None, None
    for kind, probs in calls:
        a = probs.float().mean(1)  # heads
        if kind == 'temporal':  # [B*V*P, T, T]: received, over queries
            temporal = key_grid(kind, a.mean(1), lay, bv).mean(2)
            continue
        if lay['family'] == 'videomae':
            row = a.mean(1) if lay['mode'] != 'first_token' else a[:, 0]
        else:
            row = a[:, 0]  # the cls query (per frame for spatial calls)
        spatial = key_grid(kind, row, lay, bv)
    if spatial is None:
        raise UnsupportedModelError('staa: the block has no attention over '
                                    'patch tokens')
    mass = spatial.sum(2)  # [B*V, t]
    if temporal is None:
        temporal = mass
    eps = torch.finfo(spatial.dtype).tiny
    spatial = spatial / mass.clamp_min(eps).unsqueeze(2)
    temporal = temporal / temporal.sum(1, keepdim=True).clamp_min(eps)
    assert temporal.shape[1] == t
    return spatial * temporal.unsqueeze(2), spatial, temporal


def threshold_and_focus(m: Tensor, threshold: Optional[float],
                        focus: float) -> Tensor:
    """``[N, ...]``: values below each row's ``threshold`` quantile -> 0,
    then ``m ** focus`` renormalised to each row's original sum."""
    flat = m.reshape(m.shape[0], -1)
    total = flat.sum(1, keepdim=True)
    if threshold is not None:
        q = torch.quantile(flat, threshold, dim=1, keepdim=True)
        flat = torch.where(flat >= q, flat, torch.zeros_like(flat))
    if focus != 1.0:
        flat = flat.pow(focus)
        flat = flat / flat.sum(1, keepdim=True).clamp_min(
            torch.finfo(flat.dtype).tiny) * total
    return flat.reshape(m.shape)


@EXPLAINERS.register_module()
class STAA(BaseExplainer):
    """STAA: ``S[t, p] * tau[t]`` from block ``layer``'s attention, heads
    averaged, one forward pass, no gradients, not class specific (the
    target only selects the score). Maps ``[B, V, T, H, W]``; extras
    ``spatial`` ``[B, V, t, h, w]`` (each frame sums to 1), ``temporal``
    ``[B, V, t]`` (sums to 1), ``token_map``.

    Args:
        layer: block whose attention is read (negative: from the end).
        threshold: quantile in ``[0, 1)`` below which values are zeroed
            (dynamic thresholding); ``None``: off.
        focus: exponent ``>= 1`` sharpening the map (attention focusing);
            1: off.
    """
    reports_probs = True
    memory_kind = 'forward'
    #: a view's attention and map do not depend on the other views: views
    #: in passes of ``max_views_per_pass`` equal one pass
    views_separable = True

    def __init__(self, model: nn.Module, layer: int = -1,
                 threshold: Optional[float] = None, focus: float = 1.0,
                 **kwargs):
        super().__init__(model, **kwargs)
        reason = unsupported_reason(self.name, self.model)
        if reason:
            raise UnsupportedModelError(reason)
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise MMXAIError(f'layer must be a whole number, got {layer!r}')
        n = len(attention_blocks(self.model.backbone))
        self.block = layer_indices(n, layer)[0]
        if threshold is not None and not (
                isinstance(threshold, (int, float)) and 0 <= threshold < 1):
            raise MMXAIError(f'threshold must be a quantile in [0, 1) or '
                             f'None, got {threshold!r}')
        if isinstance(focus, bool) or not isinstance(focus, (int, float)) \
                or focus < 1:
            raise MMXAIError(f'focus must be a number >= 1, got {focus!r}')
        self.layer, self.threshold, self.focus = layer, threshold, \
            float(focus)

    def settings(self) -> Dict[str, Any]:
        return dict(layer=self.layer, block=self.block,
                    threshold=self.threshold, focus=self.focus,
                    head_fusion='mean')

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        bb = self.model.backbone
        lay = token_layout(self, inputs)
        blocks = attention_blocks(bb)
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        calls: list = []
        starts, ends = [], []  # the block's calls in each backbone forward
        pre = blocks[self.block].register_forward_pre_hook(
            lambda m, a: starts.append(len(calls)))
        post = blocks[self.block].register_forward_hook(
            lambda m, a, o: ends.append(len(calls)))
        try:
            # only the read block's attention is kept (one layer's memory)
            with record_attention(blocks[self.block]) as recorded, \
                    torch.no_grad():
                calls = recorded
                scores, probs = self.adapter.scores_and_probs(inputs)
        finally:
            pre.remove()
            post.remove()
        targets = resolve_targets(target, scores, data_samples,
                                  pred_basis(self.adapter, probs))
        parts = []
        for s, e in zip(starts, ends):  # one per backbone forward
            block_calls = [(c.kind, c.probs) for c in calls[s:e]]
            m = block_calls[-1][1].shape[0]
            n = m // (lay['t'] if block_calls[-1][0] == 'spatial' or
                      lay['mode'] == 'space_only' else 1)
            parts.append(staa_grid(block_calls, lay, n))
        grid, spatial, temporal = (torch.cat(x) for x in zip(*parts))
        if grid.shape[0] != b * v:
            raise UnsupportedModelError(
                f'{self.name}: the backbone ran on {grid.shape[0]} views, '
                f'not {b * v}')
        grid = threshold_and_focus(grid, self.threshold, self.focus)
        shape = (b, v, lay['t'], lay['h'], lay['w'])
        grid = grid.reshape(shape)
        maps = self.adapter.upsample(grid, 'backbone', inputs)
        return Attribution(
            maps, scores.detach(), targets, layer_maps={'staa': maps},
            extras={'token_map': grid, 'spatial': spatial.reshape(shape),
                    'temporal': temporal.reshape(b, v, lay['t'])},
            probs=probs.detach())


__all__ = ['STAA', 'staa_grid', 'threshold_and_focus']
