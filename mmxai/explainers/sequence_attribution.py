"""Temporal attribution of a causal TCN's phase score at time t over a
cached frame-feature sequence (the two-stage phase models of
:mod:`mmxai.models.phase_tcn`).

The head at time t sees only the *context* ``x = seq[:, a..t]``: at most its
receptive field ``R`` (:func:`receptive_field`) of frames back, ``a = max(0,
t - R + 1)``, so running the head on the context alone gives exactly its
output at t on the whole sequence (every intermediate value the output at t
needs is computed from frames >= a; the causal zero padding only fills
positions it does not need). A shorter context (the model's training
window) is the per-window model. ``f(x)`` is the last stage's score of the
target at the last position (t); ``b`` is the baseline sequence (default
the context's mean frame, as :func:`~mmxai.models.feature_occlusion`).

* **occlusion**: ``phi_s = f(x) - f(x with frame s's features := b_s)``;
  ``block`` > 1 occludes blocks of frames ending at t, each frame getting
  its block's drop;
* **integrated gradients**: ``phi_s = sum_d (x - b)_{d,s} * 1/m sum_k
  df/dx_{d,s}(b + (k + 1/2)/m (x - b))`` (midpoint rule, ``m`` steps);
  ``sum_s phi_s ~= f(x) - f(b)`` (completeness, exact as ``m`` grows);
* **frame Shapley values** (Price & Damen 2020) over the feature axis: the
  players are ``players`` contiguous groups of the context frames; ``v(S)``
  is ``f`` of the context with the features of the frames outside ``S``
  replaced by the baseline (``v(empty) = f(b)``), exact over the ``2^p``
  subsets up to ``max_exact`` players, else the mean marginal over seeded
  (antithetic) permutations; ``sum_i phi_i = v(all) - v(empty)`` exactly.
  A frame's value is its group's ``phi_i / |group|`` (so the per-frame
  values add up to the same total). Play-fair's own game drops the absent
  frames and scores the shorter clip; a TCN's output at t depends on the
  *positions* of the frames (dilated causal convolutions), so dropping
  frames would move the remaining ones in time: here absent frames are
  filled with the baseline instead (frame_shapley's ``fill='baseline'``).

The first stage's input projection (a 1x1 convolution) is affine and acts
on each frame alone, so every method perturbs the *projected* context
(C = 32-64 channels, not D = 1024-2048) with the same values
(:func:`project`).

All values are exactly 0 after t (causality) and before ``a`` (outside the
receptive field or the window).
"""
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import MMXAIError, UnsupportedModelError
from .frame_shapley import (EXACT_LIMIT, exact_shapley, permutation_masks,
                            permutation_shapley, sample_permutations)

__all__ = ['receptive_field', 'check_phase_head', 'context_scores',
           'context_occlusion', 'context_integrated_gradients',
           'context_shapley', 'context_baseline', 'project',
           'projected_scores', 'unsupported_reason', 'SCORES']

#: Scores of the target at t.
SCORES = ('logit', 'prob')
#: Input elements (N x D x n) per head call.
_BATCH_ELEMENTS = 1 << 23


def check_phase_head(model: nn.Module) -> nn.Module:
    """``model.cls_head`` if it is a :class:`CausalMSTCNHead`.

    Raises:
        UnsupportedModelError: another head (one line).
    """
    from ..models.phase_tcn import CausalMSTCNHead
    head = getattr(model, 'cls_head', None)
    if not isinstance(head, CausalMSTCNHead):
        name = type(head).__name__ if head is not None else 'no cls_head'
        raise UnsupportedModelError(
            f'the phase-sequence explanation needs a two-stage model whose '
            f'head is CausalMSTCNHead (mmxai.models); this model has '
            f'{name}')
    return head


def receptive_field(head: nn.Module) -> int:
    """Frames the output at t sees: ``1 + sum over stages and layers of
    2 * dilation`` (kernel 3; ``1 + S * 2 * (2**L - 1)``)."""
    from ..models.phase_tcn import _CausalResidual
    return 1 + sum(m.pad for m in head.modules()
                   if isinstance(m, _CausalResidual))


def context_baseline(ctx: Tensor, kind: Any = 'mean') -> Tensor:
    """Baseline ``[D, n]`` for a context ``[D, n]``: ``'mean'`` (the
    context's mean frame), ``'zeros'``, or a number."""
    if kind == 'mean':
        return ctx.mean(-1, keepdim=True).expand_as(ctx)
    if kind == 'zeros':
        return torch.zeros_like(ctx)
    if isinstance(kind, (int, float)) and not isinstance(kind, bool):
        return torch.full_like(ctx, float(kind))
    raise MMXAIError(f"baseline {kind!r}: give 'mean', 'zeros' or a number")


def _check_score(score: str) -> None:
    if score not in SCORES:
        raise MMXAIError(f"score {score!r}: give 'logit' or 'prob'")


def context_scores(head: nn.Module, seqs: Tensor, target: int,
                   score: str = 'logit') -> Tensor:
    """``f`` of each sequence ``[N, D, n]``: the last stage's score of
    ``target`` at the last position, ``[N]``."""
    out = head.sequence_logits(seqs)[-1][:, :, -1]
    if score == 'prob':
        out = out.softmax(1)
    return out[:, target]


def project(head: nn.Module, seq: Tensor) -> Tensor:
    """The first stage's input projection (a 1x1 convolution, ``[.., D,
    n] -> [.., C, n]``). It is affine and acts on each frame alone, so
    replacing frame s by the baseline, or a straight path between two
    sequences, commutes with it: the methods perturb the projected
    sequence (C channels, e.g. 32-64, instead of D, e.g. 1024-2048) and
    give the same values (IG: ``sum_d (x-b)_d dF/dx_d = sum_c (Wx-Wb)_c
    dF/dy_c``)."""
    if head.dropout is not None and head.dropout.training:
        raise MMXAIError('the head is in training mode (dropout): call '
                         'model.eval() first')
    return head.stages[0].inp(seq)


def projected_scores(head: nn.Module, proj: Tensor, target: int,
                     score: str = 'logit') -> Tensor:
    """:func:`context_scores` of projected sequences ``[N, C, n]``."""
    first = head.stages[0]
    x = proj
    for layer in first.layers:
        x = layer(x)
    outs = [first.cls(x)]
    for stage in head.stages[1:]:
        outs.append(stage(outs[-1].softmax(1)))
    out = outs[-1][:, :, -1]
    if score == 'prob':
        out = out.softmax(1)
    return out[:, target]


def _batched_scores(head, make, total: int, per: int, target: int,
                    score: str) -> Tensor:
    """Scores of ``total`` projected sequences built by ``make(lo, hi)``."""
    step = max(1, _BATCH_ELEMENTS // max(1, per))
    out = []
    with torch.no_grad():
        for lo in range(0, total, step):
            out.append(projected_scores(
                head, make(lo, min(total, lo + step)), target, score))
    return torch.cat(out)


def context_occlusion(head: nn.Module, ctx: Tensor, target: int,
                      baseline: Tensor, score: str = 'logit',
                      block: int = 1) -> Dict[str, Any]:
    """Occlusion of each frame (block) of ``ctx [D, n]``.

    Returns:
        ``values [n]`` (float64), ``f_x``.
    """
    _check_score(score)
    if block < 1:
        raise MMXAIError(f'occlusion block {block}: give 1 or more frames')
    with torch.no_grad():
        ctx, baseline = project(head, torch.stack([ctx, baseline]))
    d, n = ctx.shape
    ends = list(range(n - 1, -1, -block))  # blocks end at t, t-block, ...
    spans = [(max(0, e - block + 1), e + 1) for e in ends]

    def make(lo, hi):
        batch = ctx[None].repeat(hi - lo, 1, 1)
        for j in range(lo, hi):
            if j < len(spans):
                a, b = spans[j]
                batch[j - lo, :, a:b] = baseline[:, a:b]
        return batch
    vals = _batched_scores(head, make, len(spans) + 1, d * n, target,
                           score).double()
    f_x = vals[-1]
    values = torch.zeros(n, dtype=torch.float64)
    for j, (a, b) in enumerate(spans):
        values[a:b] = f_x - vals[j]
    return dict(values=values, f_x=float(f_x))


def context_integrated_gradients(head: nn.Module, ctx: Tensor, target: int,
                                 baseline: Tensor, score: str = 'logit',
                                 steps: int = 32) -> Dict[str, Any]:
    """Integrated Gradients of the score at t over ``ctx [D, n]``.

    Returns:
        ``values [n]`` (summed over channels), ``f_x``, ``f_b``, ``gap``
        ``= sum(values) - (f_x - f_b)`` (the completeness error).
    """
    _check_score(score)
    if steps < 1:
        raise MMXAIError(f'IG steps {steps}: give 1 or more')
    with torch.no_grad():
        ctx, baseline = project(head, torch.stack([ctx, baseline]))
    d, n = ctx.shape
    diff = ctx - baseline
    grad_sum = torch.zeros_like(ctx)
    step = max(1, _BATCH_ELEMENTS // max(1, d * n))
    with torch.enable_grad():
        for lo in range(0, steps, step):
            k = torch.arange(lo, min(steps, lo + step), dtype=ctx.dtype)
            alpha = ((k + 0.5) / steps).view(-1, 1, 1)
            path = (baseline + alpha * diff).detach().requires_grad_(True)
            out = projected_scores(head, path, target, score).sum()
            g, = torch.autograd.grad(out, path)
            grad_sum += g.sum(0)
    values = (diff * grad_sum / steps).sum(0).double().detach()
    with torch.no_grad():
        f = projected_scores(head, torch.stack([ctx, baseline]), target,
                             score).double()
    f_x, f_b = float(f[0]), float(f[1])
    return dict(values=values, f_x=f_x, f_b=f_b,
                gap=float(values.sum()) - (f_x - f_b))


def player_groups(n: int, players: int) -> List[np.ndarray]:
    """``players`` contiguous groups of ``n`` frames (sizes differ by at
    most one; fewer players when ``n < players``)."""
    return [g for g in np.array_split(np.arange(n), min(n, players))
            if len(g)]


def context_shapley(head: nn.Module, ctx: Tensor, target: int,
                    baseline: Tensor, score: str = 'logit',
                    players: int = 8, max_exact: int = 8,
                    num_samples: int = 64, antithetic: bool = True,
                    seed: int = 0) -> Dict[str, Any]:
    """Frame Shapley values of groups of ``ctx [D, n]``'s frames.

    Returns:
        ``values [n]`` (a frame: its group's value / group size),
        ``player_values [p]``, ``groups`` (``[first, last]`` context
        positions), ``v_all``, ``v_empty``, ``exact``, ``evaluations``.
    """
    _check_score(score)
    if players < 1:
        raise MMXAIError(f'shapley players {players}: give 1 or more')
    if max_exact > EXACT_LIMIT:
        raise MMXAIError(f'shapley max_exact {max_exact}: at most '
                         f'{EXACT_LIMIT} (2^max_exact subsets)')
    with torch.no_grad():
        ctx, baseline = project(head, torch.stack([ctx, baseline]))
    d, n = ctx.shape
    groups = player_groups(n, players)
    p = len(groups)
    exact = p <= max_exact
    perms = None
    if exact:
        masks = list(range(1 << p))
    else:
        gen = torch.Generator().manual_seed(int(seed))
        perms = sample_permutations(p, num_samples, antithetic, gen)
        masks = [0] + permutation_masks(perms)
    member = torch.zeros(p, n, dtype=torch.bool)
    for i, g in enumerate(groups):
        member[i, torch.as_tensor(g)] = True
    bits = torch.tensor([[m >> i & 1 for i in range(p)] for m in masks],
                        dtype=torch.bool)  # [M, p]

    def make(lo, hi):
        keep = (bits[lo:hi, :, None] & member[None]).any(1)  # [m, n]
        return torch.where(keep[:, None, :], ctx[None], baseline[None])
    vals = _batched_scores(head, make, len(masks), d * n, target,
                           score).double()
    table = dict(zip(masks, vals.tolist()))
    full = (1 << p) - 1
    if exact:
        phi = exact_shapley(vals)
    else:
        phi = permutation_shapley(perms, table.__getitem__)
    values = torch.zeros(n, dtype=torch.float64)
    for i, g in enumerate(groups):
        values[torch.as_tensor(g)] = phi[i] / len(g)
    return dict(values=values, player_values=phi,
                groups=[[int(g[0]), int(g[-1])] for g in groups],
                v_all=table[full], v_empty=table[0], exact=exact,
                evaluations=len(masks))


def unsupported_reason(model: nn.Module) -> Optional[str]:
    """None when the model's head is a CausalMSTCNHead, else why not."""
    try:
        check_phase_head(model)
    except UnsupportedModelError as e:
        return str(e)
    return None
