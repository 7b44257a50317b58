"""Token operators of MViT(v2)'s pooling attention (MMAction2 ``MViT``) for
attention rollout / relevance, kept factorised (pooling as box kernels
applied with strided convolutions, attention as the recorded
``[B, Lq, Lkv]``; no ``N x N`` matrix over the input tokens).

One ``MultiScaleBlock`` on input tokens ``[cls] + (T H W)`` computes
``y = Skip(x) + proj(A Pool_kv(x) + [residual_pooling] Pool_q(x))`` (then
an MLP, token-wise). As token operators (cls rows/columns pass every
pooling unchanged; residual pooling is not added to the cls query):

* ``P_kv`` / ``P_q``: the depthwise ``Conv3d`` poolings ``pool_k`` /
  ``pool_q`` (kernel, stride, padding read from the modules): pooled token
  ``o`` covers the input tokens of its kernel window inside the grid,
  ``P[o, n] = 1 / |window(o)|`` (the receptive field, channel-agnostic:
  the learned per-channel kernel weights are not used);
* ``S``: the skip pooling ``pool_skip`` (``MaxPool3d``, kernel ``s + 1``,
  stride ``s``) likewise uniform over its window (max pooling picks one
  token per channel, a different one per channel), or ``I`` when the block
  does not pool queries;
* the block's operator: ``O = S + A P_kv + [res] P_q``, every term
  row-stochastic. Rollout uses ``rownorm(O)`` (the pooled generalisation of
  ``rownorm(A + I)``); relevance ``R <- (S + [res] P_q) R + A_bar P_kv R``
  (Chefer's ``R + A_bar R`` with the identity replaced by the block's own
  residual paths).

``A`` is not exposed by any submodule (a functional softmax), so
:func:`mvit_attention_forward` recomputes ``MultiScaleAttention.forward``
from the module's own weights and functions and returns the probabilities,
which a forward hook then uses downstream (in the autograd graph).
"""
import sys
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLED_BACKBONES = ('MViT',)


def _t3(v) -> Tuple[int, int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) \
        else (int(v),) * 3


def pool_geometry(pool: nn.Module, in_size: Sequence[int]) -> Dict[str, Any]:
    """Kernel, stride and padding of a ``Conv3d``/``MaxPool3d`` token
    pooling, with its ``in_size`` and ``out_size`` ``(T, H, W)``."""
    k, s, p = _t3(pool.kernel_size), _t3(pool.stride), _t3(pool.padding)
    in_size = _t3(in_size)
    out = tuple((n + 2 * pp - kk) // ss + 1
                for n, kk, ss, pp in zip(in_size, k, s, p))
    return dict(kernel=k, stride=s, padding=p, in_size=in_size,
                out_size=out)


def _counts(g: Dict[str, Any], like: Tensor) -> Tensor:
    ones = torch.ones(1, 1, *g['in_size'], dtype=like.dtype,
                      device=like.device)
    box = torch.ones(1, 1, *g['kernel'], dtype=like.dtype,
                     device=like.device)
    return F.conv3d(ones, box, stride=g['stride'], padding=g['padding'])[0]


def pool_rows(r: Tensor, g: Dict[str, Any]) -> Tensor:
    """Row vectors over pooled tokens ``[B, To, Ho, Wo]`` times ``P`` ->
    ``[B, T, H, W]``: each pooled token's value split evenly over the input
    tokens of its window (a transposed box convolution)."""
    b = r.shape[0]
    r = r.reshape(b, 1, *g['out_size']) / _counts(g, r)
    box = torch.ones(1, 1, *g['kernel'], dtype=r.dtype, device=r.device)
    base = [(o - 1) * s - 2 * p + k for o, s, p, k in
            zip(g['out_size'], g['stride'], g['padding'], g['kernel'])]
    extra = [n - m for n, m in zip(g['in_size'], base)]
    out = F.conv_transpose3d(r, box, stride=g['stride'],
                             padding=g['padding'], output_padding=extra)
    return out[:, 0]


def mvit_attention_forward(mod: nn.Module, x: Tensor, in_size
                           ) -> Tuple[Tuple[Tensor, Any], Tensor, Any]:
    """``MultiScaleAttention.forward(x, in_size)`` recomputed with its
    probabilities exposed: ``((out, q_shape), probs [B, h, Lq, Lkv],
    kv_shape)``."""
    lib = sys.modules[type(mod).__module__]
    b, n, _ = x.shape
    qkv = mod.qkv(x).reshape(b, n, 3, mod.num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    cls = mod.with_cls_token
    q, q_shape = lib.attention_pool(q, mod.pool_q, in_size, norm=mod.norm_q,
                                    with_cls_token=cls)
    k, k_shape = lib.attention_pool(k, mod.pool_k, in_size, norm=mod.norm_k,
                                    with_cls_token=cls)
    v, _ = lib.attention_pool(v, mod.pool_v, in_size, norm=mod.norm_v,
                              with_cls_token=cls)
    attn = (q * mod.scale) @ k.transpose(-2, -1)
    if mod.rel_pos_embed:
        attn = lib.add_decomposed_rel_pos(attn, q, q_shape, k_shape,
                                          mod.rel_pos_h, mod.rel_pos_w,
                                          mod.rel_pos_t, cls)
    probs = attn.softmax(dim=-1)
    out = probs @ v
    if mod.residual_pooling:
        if cls:
            out = torch.cat([out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]], 2)
        else:
            out = out + q
    out = out.transpose(1, 2).reshape(b, -1, mod.out_dims)
    return (mod.proj(out), q_shape), probs, k_shape


def mvit_block_geometry(block: nn.Module, in_size) -> Dict[str, Any]:
    """Operators of one ``MultiScaleBlock`` call on grid ``in_size``."""
    attn = block.attn
    skip = getattr(block, 'pool_skip', None)
    return dict(cls=int(bool(attn.with_cls_token)), in_size=_t3(in_size),
                q=pool_geometry(attn.pool_q, in_size),
                kv=pool_geometry(attn.pool_k, in_size),
                skip=None if skip is None else pool_geometry(skip, in_size),
                residual_pooling=bool(attn.residual_pooling))


def pooled_rows(r: Tensor, mat: Tensor, meta: Dict[str, Any],
                residual: str) -> Tensor:
    """Row vectors ``r [B, cls + To*Ho*Wo]`` times the block operator:
    ``rownorm(O)`` (``'rollout'``) or ``S + [res] P_q + A P_kv`` with
    ``A = mat [B, Lq, Lkv]`` (``'relevance'``) -> ``[B, cls + T*H*W]``."""
    c = meta['cls']
    b = r.shape[0]
    q, kv, skip = meta['q'], meta['kv'], meta['skip']
    if residual == 'rollout':  # row sums: 1 (A P_kv) + 1 (S) + 1 (P_q)
        denom = torch.full_like(r, 3.0 if meta['residual_pooling'] else 2.)
        if c:
            denom[:, 0] = 2.0
        r = r / denom
    u = torch.bmm(r.unsqueeze(1), mat.to(r.dtype)).squeeze(1)
    grid = pool_rows(u[:, c:], kv)
    grid_r = r[:, c:]
    if skip is not None:
        grid = grid + pool_rows(grid_r, skip)
    else:
        grid = grid + grid_r.reshape(b, *meta['in_size'])
    if meta['residual_pooling']:
        grid = grid + pool_rows(grid_r, q)
    out = grid.reshape(b, -1)
    if c:
        out = torch.cat([u[:, :1] + r[:, :1], out], dim=1)
    return out


def propagate_pooled(ops: Sequence[Tuple[Tensor, Dict[str, Any]]],
                     start: Tensor, residual: str) -> Tensor:
    """``start [B, cls + L_last]`` through the blocks, last to first."""
    r = start
    for mat, meta in reversed(list(ops)):
        r = pooled_rows(r, mat, meta, residual)
    return r


__all__ = ['POOLED_BACKBONES', 'mvit_attention_forward',
           'mvit_block_geometry', 'pool_geometry', 'pool_rows',
           'pooled_rows', 'propagate_pooled']
