"""Which convolution produced each channel of a tensor, read from the
autograd graph of one forward pass (:func:`trace_channels`).

Followed: element-wise ops, pooling, normalisation, residual sums,
concatenations (SlowFast's laterals), slices, splits, permutes, transposes
and the reshapes of 2D recognizers and TSM. Stopped at matrix products,
indexing and other convolutions (:data:`_STOP_OPS`).
"""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

#: Autograd nodes through which channels cannot be followed.
_STOP_OPS = ('Mm', 'Addmm', 'Bmm', 'Baddbmm', 'Matmul', 'Linear', 'Embedding',
             'Index', 'Gather', 'Scatter', 'Convolution', 'Einsum', 'Masked')
_MAX_VISITS = 200000

#: A channel's origin: ``(marker key, channel)``, or None (not traced).
Producer = Optional[Tuple[str, int]]


def _shape(fn, output_nr: int) -> Optional[Tuple[int, ...]]:
    try:
        return tuple(fn._input_metadata[output_nr].shape)
    except (AttributeError, IndexError, RuntimeError):
        return None


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _input_channel_dim(kind: str, fn, cd: int, s_out: Tuple[int, ...],
                       s_in: Tuple[int, ...]) -> Optional[int]:
    """Channel dim in an op's input, given it is ``cd`` in its output."""
    if kind.startswith('Permute'):
        return int(fn._saved_dims[cd]) % len(s_in)
    if kind.startswith('Transpose'):
        d0 = int(fn._saved_dim0) % len(s_out)
        d1 = int(fn._saved_dim1) % len(s_out)
        return d1 if cd == d0 else d0 if cd == d1 else cd
    if len(s_in) == len(s_out) and s_in[cd] == s_out[cd]:
        return cd  # element-wise, pooling, normalisation, ...
    if len(s_in) == len(s_out) and s_in[cd] == 1:
        return None  # broadcast over channels: no channel identity
    prefix = _prod(s_out[:cd])
    for d, size in enumerate(s_in):  # views, squeezes, reductions
        if size == s_out[cd] and _prod(s_in[:d]) == prefix:
            return d
    return None


def trace_channels(tensor: Tensor, markers: Dict[Any, str]) -> List[Producer]:
    """For each channel (dim 1) of ``tensor``, the marked tensor and channel
    it comes from, following its autograd graph backwards.

    Args:
        tensor: ``[N, C, ...]`` produced with autograd recording.
        markers: autograd node of a marked tensor (e.g. a conv output) -> key.
    Returns:
        ``C`` entries ``(key, channel)``, or None where no marked tensor is
        reached (e.g. the network input). A channel fed by several marked
        tensors (a residual sum) gets the first one in the order the op
        lists its operands (``out + identity``: the residual branch).
    """
    num = tensor.shape[1]
    result: List[Producer] = [None] * num
    fn0 = tensor.grad_fn
    if fn0 is None:
        return result
    left = num
    stack = [(fn0, tensor.output_nr, 1, torch.arange(num))]
    visits = 0
    while stack and left and visits < _MAX_VISITS:
        fn, out_nr, cd, sel = stack.pop()
        visits += 1
        key = markers.get(fn)
        if key is not None:
            for j in (sel >= 0).nonzero().view(-1).tolist():
                if result[j] is None:
                    result[j] = (key, int(sel[j]))
                    left -= 1
            continue
        kind = type(fn).__name__
        if kind.startswith(_STOP_OPS) or kind == 'AccumulateGrad':
            continue
        s_out = _shape(fn, out_nr)
        if s_out is None:
            continue
        cd = cd % len(s_out)
        nexts = [(f, n) for f, n in fn.next_functions if f is not None]
        sel_here = sel
        if kind.startswith(('SplitBackward', 'SplitWithSizesBackward',
                            'UnbindBackward')):
            dim = int(fn._saved_dim)
            s_full = tuple(fn._saved_self_sym_sizes)
            dim %= len(s_full)
            if kind.startswith('SplitWithSizes'):
                offset = sum(int(s) for s in fn._saved_split_sizes[:out_nr])
            elif kind.startswith('Split'):
                offset = int(fn._saved_split_size) * out_nr
            else:
                offset = out_nr
            if dim == cd and not kind.startswith('Unbind'):
                sel_here = torch.where(sel >= 0, sel + offset, sel)
        pushes = []
        offset = 0
        for f, n in nexts:
            s_in = _shape(f, n)
            if s_in is None or len(s_in) == 0:
                continue
            sel_in, cd_in = sel_here, None
            if kind.startswith('CatBackward'):
                dim = int(fn._saved_dim) % len(s_out)
                cd_in = cd
                if dim == cd:
                    size = s_in[cd]
                    ok = (sel >= offset) & (sel < offset + size)
                    sel_in = torch.where(ok, sel - offset,
                                         torch.full_like(sel, -1))
                    offset += size
            elif kind.startswith('SliceBackward'):
                dim = int(fn._saved_dim) % len(s_out)
                cd_in = cd
                if dim == cd:
                    start = int(fn._saved_start)
                    start = start + s_in[cd] if start < 0 else start
                    step = int(fn._saved_step)
                    sel_in = torch.where(sel >= 0, start + sel * step, sel)
            elif kind.startswith(('SplitBackward', 'SplitWithSizesBackward')):
                cd_in = cd
            else:
                cd_in = _input_channel_dim(kind, fn, cd, s_out, s_in)
            if cd_in is None or not bool((sel_in >= 0).any()):
                continue
            pushes.append((f, n, cd_in, sel_in))
        stack.extend(reversed(pushes))  # first operand explored first
    return result
