"""Test helpers for the memory plan: what the backbone was given, an
out-of-memory error on demand, and equality of two explanations.

Used by the view-pass tests (``tests/test_explainers/test_memory.py``,
``test_view_chunks_attention.py``); no GPU needed: the error is CUDA's own
exception class, raised by a hook.
"""
from typing import Iterable, List, Tuple

import torch
from torch import nn

__all__ = ['OOMAbove', 'backbone_rows', 'assert_same_explanations']


class OOMAbove:
    """A backbone forward pre-hook that raises
    ``torch.cuda.OutOfMemoryError`` for inputs of more than ``limit`` rows
    (what too large a pass does on a GPU); ``raised`` counts them. Remove
    with ``self.handle.remove()``."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        self.limit, self.raised = limit, 0
        self.handle = model.backbone.register_forward_pre_hook(self)

    def __call__(self, module, args) -> None:
        if args[0].shape[0] > self.limit:
            self.raised += 1
            raise torch.cuda.OutOfMemoryError(
                'CUDA out of memory. Tried to allocate 20.00 GiB')


def backbone_rows(model: nn.Module) -> Tuple[List[int], object]:
    """``(rows, handle)``: ``rows`` collects the batch rows of every
    backbone forward (3D: views x samples; 2D: frames)."""
    rows: List[int] = []
    handle = model.backbone.register_forward_pre_hook(
        lambda m, args: rows.append(args[0].shape[0]))
    return rows, handle


def assert_same_explanations(a, b, extras: Iterable[str] = ()) -> None:
    """``b`` equals ``a`` to float rounding: targets exactly; scores,
    probabilities; maps and each of ``extras`` relative to their largest
    magnitude (which must not be zero for the maps)."""
    assert torch.equal(a.targets, b.targets)
    torch.testing.assert_close(b.scores, a.scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.probs, a.probs, rtol=1e-5, atol=1e-6)
    scale = a.raw_maps.abs().max()
    assert scale > 0
    torch.testing.assert_close(b.raw_maps / scale, a.raw_maps / scale,
                               rtol=1e-4, atol=1e-5)
    for key in extras:
        assert b.extras[key].shape == a.extras[key].shape, key
        s = a.extras[key].abs().max().clamp_min(1e-12)
        torch.testing.assert_close(b.extras[key] / s, a.extras[key] / s,
                                   rtol=1e-4, atol=1e-5)
