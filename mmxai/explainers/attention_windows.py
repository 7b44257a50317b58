"""Token operators of Video Swin (MMAction2 ``SwinTransformer3D``) for
attention rollout / relevance, kept factorised: per-window blocks composed
with the block's padding and cyclic shift, and the 2x2 patch merging
between stages. No ``N x N`` matrix over all tokens is ever built.

A windowed block ``b`` on a real grid ``(D, H, W)`` (row-major ``(d h w)``
token order) computes, per channel, ``y = Crop Roll_{+s} Win(A) Roll_{-s}
Pad x`` with ``Pad`` zero-padding to ``(Dp, Hp, Wp)`` (multiples of the
window), ``Roll_{-s}`` the block's ``torch.roll(x, -s)`` (``z[q] =
x[q + s]``), ``Win(A)`` block-diagonal over windows (the recorded
``[B*nW, N, N]`` probabilities, heads reduced; window order and in-window
order as ``window_partition``), ``Crop`` the inverse of ``Pad``. Its
operator on the real tokens is ``O = Crop Roll_{+s} Win(A) Roll_{-s} Pad``:
padded tokens carry no input (zeros after ``norm1``), so mass sent to them
leaves the real token set. A row vector is multiplied from the right:
``r O = Crop Roll_{+s} (Win(A)^T-side product) Roll_{-s} Pad r`` (the roll
of a row vector goes the same way as the block's, see :func:`window_rows`).

Patch merging (``PatchMerging``): token ``(d, i, j)`` of stage ``s+1`` is a
linear function of tokens ``(d, 2i+a, 2j+b)``, ``a, b in {0, 1}``, of stage
``s`` (those inside the grid; odd ``H``/``W`` are zero-padded first). The
relevance operator is ``M[(d,i,j), (d,2i+a,2j+b)] = 1 / k(d,i,j)`` with
``k`` the number of real children (4 inside, 2 or 1 on a padded edge):
``M`` is row-stochastic, so rollout and relevance mass is conserved
through a merge and split evenly over the covered tokens.

The window sizes, shifts (after ``get_window_size`` clips them to the
grid) and padding are read from each block and the grid it receives, at
run time; nothing is hard-coded.
"""
import sys
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WINDOWED_BACKBONES = ('SwinTransformer3D',)


def swin_block_geometry(block: nn.Module, x_shape: Sequence[int]
                        ) -> Dict[str, Any]:
    """Geometry of one ``SwinTransformerBlock3D`` call on ``[B, D, H, W, C]``
    input: ``batch``, ``grid (D, H, W)``, ``window``, ``shift`` (the
    module's own ``get_window_size`` applied to its ``window_size`` and
    ``shift_size``) and ``padded (Dp, Hp, Wp)``."""
    b, d, h, w = (int(v) for v in x_shape[:4])
    get_window_size = sys.modules[type(block).__module__].get_window_size
    window, shift = get_window_size((d, h, w), block.window_size,
                                    block.shift_size)
    window = tuple(int(v) for v in window)
    shift = tuple(int(v) for v in shift)
    padded = tuple(-(-n // k) * k for n, k in zip((d, h, w), window))
    return dict(batch=b, grid=(d, h, w), window=window, shift=shift,
                padded=padded)


def merge_geometry(x_shape: Sequence[int]) -> Dict[str, Any]:
    """Geometry of a ``PatchMerging`` call on ``[B, D, H, W, C]``: input
    ``grid`` and output ``out_grid (D, ceil(H/2), ceil(W/2))``."""
    b, d, h, w = (int(v) for v in x_shape[:4])
    return dict(batch=b, grid=(d, h, w),
                out_grid=(d, -(-h // 2), -(-w // 2)))


def _to_windows(z: Tensor, window: Tuple[int, int, int]) -> Tensor:
    """``[B, Dp, Hp, Wp]`` -> ``[B*nW, N]`` in ``window_partition`` order."""
    b, dp, hp, wp = z.shape
    wd, wh, ww = window
    z = z.view(b, dp // wd, wd, hp // wh, wh, wp // ww, ww)
    return z.permute(0, 1, 3, 5, 2, 4, 6).reshape(-1, wd * wh * ww)


def _from_windows(z: Tensor, window: Tuple[int, int, int],
                  batch: int, padded: Tuple[int, int, int]) -> Tensor:
    """Inverse of :func:`_to_windows`."""
    dp, hp, wp = padded
    wd, wh, ww = window
    z = z.view(batch, dp // wd, hp // wh, wp // ww, wd, wh, ww)
    return z.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, dp, hp, wp)


def _pad(r: Tensor, padded: Tuple[int, int, int]) -> Tensor:
    d, h, w = r.shape[1:]
    return F.pad(r, (0, padded[2] - w, 0, padded[1] - h, 0, padded[0] - d))


def _roll(r: Tensor, shift: Tuple[int, int, int], sign: int) -> Tensor:
    if not any(shift):
        return r
    return torch.roll(r, shifts=tuple(sign * s for s in shift),
                      dims=(1, 2, 3))


def window_rows(r: Tensor, mat: Tensor, meta: Dict[str, Any]) -> Tensor:
    """Row vectors ``r [B, D, H, W]`` times the block operator ``O`` (see
    the module docstring); ``mat`` ``[B*nW, N, N]``. Cost: one batched
    ``1 x N`` by ``N x N`` product per window.

    Row side of the cyclic shift: ``(r Roll_{+s})[q] = r[q + s]``, i.e.
    ``torch.roll(r, -s)``; and ``u Roll_{-s} = torch.roll(u, +s)``."""
    d, h, w = meta['grid']
    z = _roll(_pad(r, meta['padded']), meta['shift'], -1)
    z = _to_windows(z, meta['window'])
    z = torch.bmm(z.unsqueeze(1), mat.to(z.dtype)).squeeze(1)
    z = _from_windows(z, meta['window'], meta['batch'], meta['padded'])
    return _roll(z, meta['shift'], +1)[:, :d, :h, :w]


def window_cols(c: Tensor, mat: Tensor, meta: Dict[str, Any]) -> Tensor:
    """``O c`` for column vectors ``c [B, D, H, W]`` (the forward direction,
    as the block moves features): ``Crop Roll_{+s} Win(A) Roll_{-s} Pad``.
    With ``c = 1`` this is the row sums of ``O`` over real tokens."""
    d, h, w = meta['grid']
    z = _roll(_pad(c, meta['padded']), meta['shift'], -1)
    z = _to_windows(z, meta['window'])
    z = torch.bmm(mat.to(z.dtype), z.unsqueeze(2)).squeeze(2)
    z = _from_windows(z, meta['window'], meta['batch'], meta['padded'])
    return _roll(z, meta['shift'], +1)[:, :d, :h, :w]


def _merge_counts(meta: Dict[str, Any], like: Tensor) -> Tensor:
    """``k [1, D, H2, W2]``: real children of each merged token."""
    d, h, w = meta['grid']
    ones = torch.ones(1, d, h, w, dtype=like.dtype, device=like.device)
    ones = F.pad(ones, (0, w % 2, 0, h % 2))
    return ones.unflatten(2, (-1, 2)).unflatten(4, (-1, 2)).sum((3, 5))


def merge_rows(r: Tensor, meta: Dict[str, Any]) -> Tensor:
    """Row vectors ``r [B, D, H2, W2]`` over stage ``s+1`` tokens times
    ``M`` -> ``[B, D, H, W]`` over stage ``s`` tokens: each token receives
    ``1/k`` of its parent's value."""
    d, h, w = meta['grid']
    r = r / _merge_counts(meta, r)
    r = r.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return r[:, :, :h, :w]


def propagate_windowed(ops: Sequence[Tuple[str, Any, Dict[str, Any]]],
                       residual: str) -> Tuple[Tensor, Tensor]:
    """``r`` (mean over the final tokens, as Swin's average-pooled head
    reads them) times the product of per-call operators, from the last call
    to the first, through merges. ``ops``: ``('window', A [B*nW, N, N],
    meta)`` or ``('merge', None, meta)`` in call order.

    ``residual='rollout'``: a window operator is ``rownorm(O + I)`` (row
    sums of ``O`` over real tokens from :func:`window_cols`, below 1 next to
    padding); ``'relevance'``: ``I + O`` (Chefer's ``R <- R + A R``).
    Returns ``(r, identity_path)``, both ``[B, D0, H0, W0]`` on the first
    stage's grid; ``identity_path`` is the start vector through the merges
    only (the ``I`` term of ``R`` to subtract for relevance).
    """
    last = ops[-1]
    meta = last[2]
    grid = meta['out_grid'] if last[0] == 'merge' else meta['grid']
    dev = next((m.device for _, m, _ in ops if m is not None), None)
    n = grid[0] * grid[1] * grid[2]
    r = torch.full((meta['batch'], *grid), 1.0 / n, device=dev)
    ident = r.clone()
    for kind, mat, meta in reversed(list(ops)):
        if kind == 'merge':
            r, ident = merge_rows(r, meta), merge_rows(ident, meta)
            continue
        if residual == 'rollout':
            ones = torch.ones_like(r)
            scaled = r / (window_cols(ones, mat, meta) + 1)
            r = window_rows(scaled, mat, meta) + scaled
        else:
            r = r + window_rows(r, mat, meta)
    return r, ident


__all__ = ['WINDOWED_BACKBONES', 'merge_geometry', 'merge_rows',
           'propagate_windowed', 'swin_block_geometry', 'window_cols',
           'window_rows']
