"""Memory budgets of explainers: parsing ``max_memory``, the default budget
of the machine, a per-view estimate from one probe forward, and the
out-of-memory errors that halving a chunk can recover from.

The rule (``docs/scale.md``): one view's working memory is estimated from a
gradient-free probe forward of one view with forward hooks on every leaf
module, ``a`` = the sum of their output bytes, ``m`` = the largest:

* a forward without gradients holds about ``2 m`` at a time (a layer's
  input and output) plus the view's input;
* a forward whose graph is kept for a backward holds every saved activation,
  at most ``a``, plus ``2 m`` for the backward's gradients and twice the
  input.

A pass of ``n`` views (or ``n`` perturbed clips of one view) is estimated at
``n`` times that. The budget is ``max_memory`` or, by default, what the
toolbox's own inference of the same input holds, ``B x V x forward`` (its
one gradient-free pass of every view of every sample, or of its
``max_testing_views``: :func:`inference_memory`), at most half of the
available RAM (``MemAvailable``) on CPU and 80% of the free device memory
(``torch.cuda.mem_get_info``) on CUDA, taken when ``attribute`` starts. A
pass is never smaller than one view with batch 1, so a method whose one
view needs more than that (a gradient through the whole network) exceeds
the reference by that view's excess only.
"""
import gc
import re
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import MMXAIError

_UNITS = {'': 1, 'b': 1, 'k': 2 ** 10, 'm': 2 ** 20, 'g': 2 ** 30,
          't': 2 ** 40}

#: Shares of the available memory used when ``max_memory`` is not given.
CPU_SHARE, CUDA_SHARE = 0.5, 0.8


def parse_memory(value: Union[None, int, float, str]) -> Optional[int]:
    """``'4G'``, ``'512M'``, ``'1.5GB'``, ``'4GiB'`` or a number of bytes ->
    bytes (``None``, ``'auto'``: the default budget)."""
    if value is None or (isinstance(value, str) and
                         value.strip().lower() in ('', 'auto')):
        return None
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, float)):
        number, unit = float(value), ''
    else:
        match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)'
                             r'(?:i?[bB])?\s*', str(value))
        if not match:
            raise MMXAIError(f"max_memory '{value}' is not a size: use e.g. "
                             '4G, 512M or a number of bytes')
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise MMXAIError(f'max_memory must be positive, got {value!r}')
    return size


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free for the explanation on ``device``: CUDA's free memory,
    else Linux's ``MemAvailable`` (``None`` when unknown)."""
    if device.type == 'cuda' and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_budget(device: torch.device,
                   reference: Optional[int] = None) -> Optional[int]:
    """The budget when ``max_memory`` is not given: the machine's share
    (module docstring), at most ``reference`` (the toolbox's inference
    memory, :func:`inference_memory`) when given."""
    free = available_memory(device)
    if free is None:
        return reference
    share = CUDA_SHARE if device.type == 'cuda' else CPU_SHARE
    budget = int(free * share)
    return budget if reference is None else min(budget, int(reference))


@dataclass(frozen=True)
class ViewCost:
    """Estimated bytes of one view (module docstring)."""
    forward: int
    graph: int


def probe_view_cost(adapter, video: Tensor) -> ViewCost:
    """One gradient-free forward of view 0 of sample 0 of ``video``
    ``[B, V, C, T, H, W]``, leaf modules' output bytes summed (hooks
    removed after, also on failure)."""
    sizes = []

    def hook(module, args, out):
        stack = [out]
        while stack:
            item = stack.pop()
            if isinstance(item, Tensor):
                sizes.append(item.numel() * item.element_size())
            elif isinstance(item, (tuple, list)):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.values())

    model: nn.Module = adapter.model
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not any(True for _ in m.children())]
    view = video[:1, :1]
    try:
        with torch.no_grad():
            adapter.scores(adapter.from_video(view.contiguous()))
    finally:
        for h in handles:
            h.remove()
    inp = view.numel() * view.element_size()
    largest = max(sizes, default=inp)
    return ViewCost(forward=2 * largest + inp,
                    graph=sum(sizes) + 2 * largest + 2 * inp)


def inference_memory(cost: ViewCost, views: int, samples: int = 1) -> int:
    """Working memory of the toolbox's own inference of ``samples`` x
    ``views`` views in one gradient-free pass (``views``: all of them, or
    the config's ``max_testing_views``): ``samples x views x forward``."""
    return int(samples) * max(1, int(views)) * cost.forward


def fitting(budget: Optional[int], unit: int, cap: int) -> int:
    """How many units of ``unit`` bytes fit ``budget``, between 1 and
    ``cap`` (``cap`` when there is no budget)."""
    if budget is None or unit <= 0:
        return max(1, cap)
    return max(1, min(cap, budget // unit))


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError`` or the CPU allocator's refusal."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in str(exc) or
        'CUDA out of memory' in str(exc))


def release_memory(device: torch.device) -> None:
    """Give freed blocks back after an out-of-memory error."""
    gc.collect()
    if device.type == 'cuda' and torch.cuda.is_available():
        torch.cuda.empty_cache()


def format_bytes(n: Optional[float]) -> str:
    if n is None:
        return 'unknown'
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} GB'


def memory_plan_dict(views: int, batch: Optional[int], budget: Optional[int],
                     cost: Optional[ViewCost]) -> Dict[str, object]:
    """What a run used (``BaseExplainer.last_memory_plan``)."""
    return dict(views_per_pass=views, batch_size=batch, budget=budget,
                view_forward_bytes=cost and cost.forward,
                view_graph_bytes=cost and cost.graph)
