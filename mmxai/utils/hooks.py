"""Capture layer outputs with forward hooks that are always removed."""
import contextlib
from typing import Dict, Iterator, List, Sequence

import torch
from torch import Tensor, nn

from .layers import get_layer


class ActivationStore(dict):
    """``name -> output`` of the last forward; outputs of a layer called
    several times in one forward (``max_testing_views`` chunks) are
    concatenated along the batch dimension."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        self._chunks: Dict[str, List] = {n: [] for n in names}

    def _record(self, name: str, output) -> None:
        self._chunks[name].append(output)

    def reset(self) -> None:
        for chunks in self._chunks.values():
            chunks.clear()
        self.clear()

    def collect(self) -> 'ActivationStore':
        for name, chunks in self._chunks.items():
            if not chunks:
                continue
            if len(chunks) == 1:
                self[name] = chunks[0]
            elif isinstance(chunks[0], Tensor):
                self[name] = torch.cat(chunks)
            else:  # tuples of tensors (e.g. multi-pathway outputs)
                self[name] = type(chunks[0])(
                    torch.cat(parts) for parts in zip(*chunks))
        return self


def _as_leaf(store: ActivationStore, name: str, out):
    """Forward hook of ``leaves=True``: a tensor output computed without a
    graph becomes a leaf that requires grad (recorded); the forward goes on
    with a copy of it, so later in-place ops never touch the leaf."""
    if isinstance(out, Tensor) and torch.is_grad_enabled() and \
            not out.requires_grad and out.is_floating_point():
        leaf = out.detach().requires_grad_(True)
        store._record(name, leaf)
        return leaf.clone()
    store._record(name, out)
    return None


@contextlib.contextmanager
def capture_activations(model: nn.Module, names: Sequence[str],
                        pre: bool = False, leaves: bool = False
                        ) -> Iterator[ActivationStore]:
    """Record the outputs (or, with ``pre``, the first input) of the named
    layers during forwards inside the block. Hooks are removed on exit.

    ``leaves``: outputs computed without a graph (parameters frozen, inputs
    not requiring grad) are recorded as leaves that require grad, so a
    backward from the score stops at the layer and nothing below it keeps
    a graph (the memory of the layers below is freed as in inference)."""
    store = ActivationStore(names)
    handles = []
    try:
        for name in names:
            layer = get_layer(model, name)
            if pre:
                handles.append(layer.register_forward_pre_hook(
                    lambda m, args, n=name: store._record(n, args[0])))
            elif leaves:
                handles.append(layer.register_forward_hook(
                    lambda m, args, out, n=name: _as_leaf(store, n, out)))
            else:
                handles.append(layer.register_forward_hook(
                    lambda m, args, out, n=name: store._record(n, out)))
        yield store
    finally:
        for h in handles:
            h.remove()
