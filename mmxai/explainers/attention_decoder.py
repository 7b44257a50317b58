"""Token operators of UniFormerV2 (MMAction2 ``UniFormerV2``) for attention
rollout / relevance: per-frame CLIP blocks (local temporal MHRA + spatial
self-attention) and the global query decoder, kept factorised.

State: a row vector over the tokens of every frame, ``r [N, T, 1 + HW]``
(cls + patches per frame, the blocks' ``[1 + HW, N*T, C]`` order), and one
weight ``q [N]`` on the decoder's query (the learned ``temporal_cls_token``
carried through the decoder layers). Calls, from the last to the first:

* ``full`` (each block's ``nn.MultiheadAttention``, per frame):
  ``rownorm(A + I)`` / ``I + A_bar`` on ``[1 + HW]`` of each frame;
* ``local_t`` (``Local_MHRA``: a depthwise ``Conv3d`` over time inside a
  residual, patch tokens only): rollout ``(I + B) / 2`` with ``B`` the box
  operator of its kernel; relevance unchanged (a static kernel is not an
  attention map);
* ``decoder`` (``Extractor`` ``j``: ``q <- q + Attn(q, y_i)``, ``y_i`` the
  tokens of block ``i`` in ``return_list`` over all frames, ``(t l)``
  order): rollout ``rownorm(a + e_q)``: half of ``q``'s weight goes to the
  tokens through ``a [T*(1+HW)]``, half stays on the query; relevance:
  ``q``'s weight times ``a_bar`` goes to the tokens, ``q`` stays;
* ``dpe`` (the depthwise ``Conv3d`` added to the patch tokens the decoder
  reads, ``y = x + dpe(x)``): applied to the decoder's share only, rollout
  ``(I + B) / 2``, relevance unchanged.

Start (the head reads ``norm((1 - w) q + w mean_t cls_t)``, ``w =
sigmoid(balance)`` per channel): ``q = 1 - mean(w)``, each frame's cls
``mean(w) / T`` (the channel mean of the mixing weight). The query's
remaining weight at the start (a parameter, not video) is dropped; the map
is the patch part of ``r`` at the first block's input.
"""
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor

from .attention_pooling import pool_rows

DECODER_BACKBONES = ('UniFormerV2',)


def _patch_op(r: Tensor, meta: Dict[str, Any], residual: str) -> Tensor:
    """``(I + B) / 2`` (rollout) on the patch tokens of ``r [N, T, L]``;
    relevance: unchanged."""
    if residual != 'rollout':
        return r
    n, t, length = r.shape
    t_, h, w = meta['in_size']
    patches = r[:, :, 1:].reshape(n, t, h, w)
    moved = pool_rows(patches, meta).reshape(n, t, h * w)
    return torch.cat([r[:, :, :1], (moved + r[:, :, 1:]) / 2], dim=2)


def propagate_decoder(ops: Sequence[Tuple[str, Any, Dict[str, Any]]],
                      start_tokens: Tensor, start_query: Tensor,
                      residual: str) -> Tensor:
    """``(r, q)`` from the head back to the first block's input; returns
    ``r [N, T, 1 + HW]`` there."""
    r, q = start_tokens, start_query
    pending = None
    for kind, mat, meta in reversed(list(ops)):
        if kind == 'decoder':
            n, t, length = r.shape
            a = mat.reshape(n, t, length).to(r.dtype)
            share = q / 2 if residual == 'rollout' else q
            pending = share.view(n, 1, 1) * a
            if residual == 'rollout':
                q = q / 2
        elif kind == 'dpe':
            r = r + _patch_op(pending, meta, residual)
            pending = None
        elif kind == 'local_t':
            r = _patch_op(r, meta, residual)
        elif kind == 'full':
            n, t, length = r.shape
            flat = r.reshape(n * t, 1, length)
            if residual == 'rollout':
                flat = flat / (mat.sum(-1).unsqueeze(1) + 1)
            moved = torch.bmm(flat, mat.to(flat.dtype))
            r = (moved + flat).reshape(n, t, length)
        else:
            raise ValueError(f'unknown operator kind {kind}')
    if pending is not None:  # a decoder without its dpe: tokens as read
        r = r + pending
    return r


__all__ = ['DECODER_BACKBONES', 'propagate_decoder']


def extractor_forward(mod, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor]:
    """``Extractor.forward(x, y)`` recomputed with its cross-attention
    probabilities exposed: ``(out, aff [N, h, Tx, Ty])``."""
    xq, yk = mod.ln_1(x), mod.ln_3(y)
    d = mod.ln_1.weight.size(0)
    w, b = mod.attn.in_proj_weight, mod.attn.in_proj_bias
    q = xq @ w[:d].T + b[:d]
    k = yk @ w[d:-d].T + b[d:-d]
    v = yk @ w[-d:].T + b[-d:]
    tx, ty, n = q.size(0), k.size(0), q.size(1)
    heads, dim = mod.attn.num_heads, mod.attn.head_dim
    q = q.view(tx, n, heads, dim).permute(1, 2, 0, 3)
    k = k.view(ty, n, heads, dim).permute(1, 2, 0, 3)
    v = v.view(ty, n, heads, dim).permute(1, 2, 0, 3)
    aff = (q @ k.transpose(-2, -1) / (dim ** 0.5)).softmax(dim=-1)
    out = mod.attn.out_proj((aff @ v).permute(2, 0, 1, 3).flatten(2))
    x = x + mod.drop_path(out)
    x = x + mod.drop_path(mod.mlp(mod.ln_2(x)))
    return x, aff


__all__ += ['extractor_forward']
