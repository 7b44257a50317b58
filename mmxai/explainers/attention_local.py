"""Token operators of UniFormer (v1, MMAction2 ``UniFormer``) for attention
rollout / relevance: local relation aggregators (depthwise convolutions)
and global self-attention on a ``(T, H, W)`` token grid, kept factorised.

Per call, on the grid ``[B, T, H, W]`` (row vectors multiplied from the
right, from the last call to the first):

* ``conv_pool`` (``patch_embed2..4``: a strided ``Conv3d``): ``P[o, n] = 1 /
  |window(o)|`` over the input tokens of output ``o``'s receptive field
  (kernel, stride, padding read from the module; channel-agnostic);
* ``local`` (each block's ``pos_embed`` and ``CBlock``'s local MHRA
  ``attn``, depthwise ``Conv3d`` inside a residual ``x + f(x)``): the box
  operator ``B`` of the kernel (same rule, stride 1) plus the identity.
  Its "affinity" is a learned static kernel, not an attention map:
  rollout uses ``rownorm(I + B) = (I + B) / 2``; relevance leaves ``R``
  unchanged there (Chefer's rule updates ``R`` at attention layers only,
  as it passes MLPs; an ungated ``I + B`` would double ``R`` per block and
  bury the class-specific attention terms under a class-agnostic blur);
* ``full`` (``SABlock``'s global ``Attention``): ``rownorm(A + I)`` /
  ``I + A_bar`` over the ``(t h w)`` tokens of the stage, as for ViTs.

The head average-pools the last grid, so the start row is the mean over
its tokens; the map is read on ``patch_embed1``'s output grid.
"""
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor

from .attention_pooling import pool_rows

LOCAL_BACKBONES = ('UniFormer',)


def local_rows(r: Tensor, kind: str, mat, meta: Dict[str, Any],
               residual: str) -> Tensor:
    """``r [B, To, Ho, Wo]`` times one operator -> ``[B, T, H, W]``."""
    if kind == 'conv_pool':
        return pool_rows(r, meta)
    if kind == 'local':
        if residual != 'rollout':
            return r
        return (pool_rows(r, meta) + r) / 2
    if kind == 'full':
        b = r.shape[0]
        flat = r.reshape(b, 1, -1)
        if residual == 'rollout':
            flat = flat / (mat.sum(-1).unsqueeze(1) + 1)
        moved = torch.bmm(flat, mat.to(flat.dtype))
        return (moved + flat).reshape(r.shape)
    raise ValueError(f'unknown operator kind {kind}')


def propagate_local(ops: Sequence[Tuple[str, Any, Dict[str, Any]]],
                    residual: str) -> Tuple[Tensor, Tensor]:
    """Mean over the last grid through every call after the first
    ``conv_pool`` (the patch embedding from pixels). Returns ``(r,
    identity_path)`` on the first token grid ``[B, T0, H0, W0]``; the
    identity path has no attention and no local aggregation (``A = 0``,
    ``B = 0``): the ``I`` term of ``R``."""
    ops = list(ops)
    if ops and ops[0][0] == 'conv_pool':
        ops = ops[1:]
    meta = next(m for _, _, m in reversed(ops) if m is not None)
    size = meta['out_size']
    n = size[0] * size[1] * size[2]
    r = torch.full((meta['batch'], *size), 1.0 / n)
    dev = next((m.device for _, m, _ in ops if m is not None), None)
    r = r.to(dev) if dev is not None else r
    ident = r.clone()
    for kind, mat, meta in reversed(ops):
        r = local_rows(r, kind, mat, meta, residual)
        if kind == 'conv_pool':
            ident = pool_rows(ident, meta)
    return r, ident


__all__ = ['LOCAL_BACKBONES', 'local_rows', 'propagate_local']
