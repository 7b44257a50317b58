"""Gradient checkpointing of a recognizer's backbone for input gradients.

A backward to the input keeps every activation of the forward (one view of
X3D-S at 13 x 182 x 182: about 0.6 GB, four times the toolbox's whole
gradient-free 3-view pass). With checkpointing the backbone runs as
*segments*; a forward stores only each segment's inputs, and the backward
recomputes one segment at a time (``torch.utils.checkpoint.checkpoint``,
``use_reentrant=False``) and back-propagates through it. The graph held at a
time is then the segments' inputs plus one segment's activations; the cost is
one extra forward of every segment during the backward (about one extra
forward of the backbone per backward). Gradients are the same up to float
rounding: the recomputed forward is the same computation (eval mode:
BatchNorm uses its running statistics, dropout is off; the RNG state is
restored for the recompute anyway).

Segments come from the model's own structure, found at run time
(:func:`find_segments`): the blocks of the backbone's *block lists* (an
``nn.Sequential`` / ``nn.ModuleList`` whose children are all composite
modules of one type): ResNet / ResNet3d / X3D ``layerN`` -> their
bottlenecks, TimeSformer / ViT / VideoMAE / UniFormerV2 -> their transformer
layers, Video Swin -> its stages' blocks. A block that itself holds a block
list of two or more blocks is split into those (e.g. a Swin stage into its
blocks). Nothing is hard-coded per config.

:func:`checkpointed_segments` replaces the segments' ``forward`` by an
instance attribute for the duration of a block and deletes it on exit (also
on failure), so the model is left as found: no hooks, no new attributes.
"""
import contextlib
import functools
from typing import Iterator, List, Optional, Union

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import MMXAIError

#: ``grad_checkpoint`` values: on, off, or decided by the memory plan.
CHOICES = (True, False, 'auto')


def check_grad_checkpoint(value: Union[bool, str]) -> Union[bool, str]:
    """``True`` / ``False`` / ``'auto'`` (also ``'on'``, ``'off'``,
    ``'true'``, ``'false'``) -> ``True``, ``False`` or ``'auto'``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('auto', ''):
        return 'auto'
    if text in ('true', 'on', 'yes', '1'):
        return True
    if text in ('false', 'off', 'no', '0'):
        return False
    raise MMXAIError(f'grad_checkpoint must be true, false or auto, got '
                     f'{value!r}')


def _composite(module: nn.Module) -> bool:
    return any(True for _ in module.children())


def _is_block_list(module: nn.Module, least: int) -> bool:
    """An ``nn.Sequential`` / ``nn.ModuleList`` of at least ``least``
    composite children, all of one type."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList)):
        return False
    kids = list(module.children())
    return len(kids) >= least and all(_composite(k) for k in kids) and \
        len({type(k) for k in kids}) == 1


def _collect(module: nn.Module, inside_block: bool) -> List[nn.Module]:
    segments: List[nn.Module] = []
    for child in module.children():
        # a backbone's stage may hold a single block; inside a block, only
        # a list of two or more splits it
        if _is_block_list(child, 2 if inside_block else 1):
            for block in child.children():
                inner = _collect(block, inside_block=True)
                segments.extend(inner or [block])
        else:
            segments.extend(_collect(child, inside_block))
    return segments


def find_segments(model: nn.Module) -> List[nn.Module]:
    """The checkpoint segments of ``model`` (module docstring): the blocks
    of the block lists of ``model.backbone`` (of ``model`` when it has no
    backbone), in module order, none inside another."""
    root = getattr(model, 'backbone', None)
    if not isinstance(root, nn.Module):
        root = model
    segments, seen = [], set()
    for m in _collect(root, inside_block=False):
        if id(m) not in seen:  # a module shared by two lists: once
            seen.add(id(m))
            segments.append(m)
    return segments


def _checkpointed(forward):
    """``forward`` run under ``checkpoint`` when a graph is being built."""
    @functools.wraps(forward)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return run


@contextlib.contextmanager
def checkpointed_segments(model: nn.Module, enabled: bool = True
                          ) -> Iterator[List[nn.Module]]:
    """Inside the block, each segment of :func:`find_segments` runs under
    gradient checkpointing (yields the segments; ``[]`` when not
    ``enabled``). Each segment's ``forward`` becomes an instance attribute
    wrapping the one it had; on exit the attribute is deleted (or the
    instance attribute it replaced put back), also on failure."""
    if not enabled:
        yield []
        return
    segments = find_segments(model)
    replaced = []  # (module, had an instance forward, that forward)
    try:
        for m in segments:
            own = 'forward' in vars(m)
            replaced.append((m, own, vars(m).get('forward')))
            m.forward = _checkpointed(m.forward)
        yield segments
    finally:
        for m, own, previous in reversed(replaced):
            if own:
                m.forward = previous
            else:
                vars(m).pop('forward', None)


def wants_checkpointing(option: Union[bool, str], toolbox_budget: bool,
                        plan: Optional[dict]) -> bool:
    """Whether a gradient pass runs checkpointed: ``option`` when it is a
    bool; for ``'auto'``, when the budget is the toolbox's
    (``max_memory='toolbox'``) or the memory plan's estimate of one view's
    graph (``view_graph_bytes``) exceeds its budget."""
    if isinstance(option, bool):
        return option
    if toolbox_budget:
        return True
    plan = plan or {}
    graph, budget = plan.get('view_graph_bytes'), plan.get('budget')
    return bool(graph and budget and graph > budget)
