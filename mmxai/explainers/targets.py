"""Resolve ``target=`` to what an explainer explains.

A target is an output of the head (``'pred'``, ``'gt'``, an output index
for every sample, B indices, ``'output:3'``, ``dict(output=3)``) or a
function of the head's output (a callable ``f(scores [N, K]) -> [N]``).
A callable is explained through :class:`TargetOutputAdapter`: the model
seen through ``f``, with one output, so every method that scores or
differentiates ``adapter.scores`` explains ``f`` without knowing it.
"""
import re
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import TargetError

TargetSpec = Union[str, int, Sequence[int], Tensor, dict,
                   Callable[[Tensor], Tensor], None]

_OUTPUT = re.compile(r'^\s*output\s*:\s*(-?\d+)\s*$')


def is_pred(target: TargetSpec) -> bool:
    """``target`` asks for the model's prediction."""
    return target is None or (isinstance(target, str) and target == 'pred')


def is_target_function(target: TargetSpec) -> bool:
    """``target`` is a function of the head's output (not a tensor, text,
    number or sequence of indices)."""
    return callable(target) and not isinstance(
        target, (Tensor, str, int, dict, list, tuple))


def output_index(target: TargetSpec) -> TargetSpec:
    """``'output:3'``, ``dict(output=3)`` and ``'3'`` -> ``3``; any other
    spec unchanged (the config forms of an output index)."""
    if isinstance(target, dict):
        if set(target) != {'output'}:
            raise TargetError(
                f'target dict {target!r}: use dict(output=INDEX)')
        target = target['output']
        if isinstance(target, str):
            target = target.strip()
        try:
            return int(target)
        except (TypeError, ValueError):
            raise TargetError(f'target output {target!r} is not an output '
                              'index') from None
    if isinstance(target, str):
        match = _OUTPUT.match(target)
        if match:
            return int(match.group(1))
        if target.strip().lstrip('-').isdigit():
            return int(target)
    return target


def describe_target(target: TargetSpec) -> str:
    """The target as text for records and settings: ``'pred'``, ``'gt'``,
    ``'output:3'``, ``'outputs:[3, 5]'`` or ``'callable:<name>'``."""
    if is_target_function(target):
        name = getattr(target, 'target_name', None) or getattr(
            target, '__name__', None) or type(target).__name__
        return f'callable:{name}'
    if is_pred(target):
        return 'pred'
    target = output_index(target)
    if isinstance(target, str):
        return target
    if isinstance(target, int):
        return f'output:{target}'
    try:
        values = [int(v) for v in torch.as_tensor(target).view(-1)]
    except (TypeError, ValueError):
        return repr(target)
    return f'output:{values[0]}' if len(values) == 1 else f'outputs:{values}'


def pred_basis(adapter, probs: Optional[Tensor]) -> Optional[Tensor]:
    """``probs`` when the model's ``predict`` takes its ``pred_label`` from
    the per-view softmax averaged (the head's ``average_clips='prob'``),
    else ``None`` (the arg-max of the view-averaged scores)."""
    return probs if probs is not None and getattr(
        adapter, 'pred_uses_probs', False) else None


def resolve_targets(target: TargetSpec, scores: Tensor,
                    data_samples: Optional[Sequence] = None,
                    probs: Optional[Tensor] = None) -> Tensor:
    """Outputs (classes) to explain, ``[B]`` long on ``scores``' device.

    Args:
        target: ``'pred'``/None (arg-max of ``probs`` when given, else of
            ``scores``), ``'gt'`` (the samples' ``gt_label``), an output
            index for every sample (an int, ``'output:3'``,
            ``dict(output=3)``), or B ints. A callable is explained by
            :meth:`BaseExplainer.attribute` as the one output of
            :class:`TargetOutputAdapter` (index 0), never resolved here.
        scores: ``[B, K]`` class scores (``K = 1``: a regression head).
        data_samples: ``ActionDataSample`` list (needed for ``'gt'``).
        probs: ``[B, K]`` what ``predict``'s ``pred_label`` is the arg-max
            of, when that is not ``scores`` (the per-view softmax averaged,
            ``average_clips='prob'``): see :func:`pred_basis`.
    Raises:
        TargetError: unknown spec, missing labels, or a class out of range.
    """
    batch, num_classes = scores.shape
    if is_pred(target):
        return (scores if probs is None else probs).argmax(-1).to(
            scores.device)
    if is_target_function(target):
        raise TargetError(
            'a callable target is explained by BaseExplainer.attribute '
            '(the model seen through it has one output): pass it there')
    target = output_index(target)
    if isinstance(target, str):
        if target == 'gt':
            labels = []
            for i, ds in enumerate(data_samples or []):
                gt = getattr(ds, 'gt_label', None)
                if gt is None or (isinstance(gt, Tensor) and gt.numel() == 0):
                    break
                labels.append(int(torch.as_tensor(gt).view(-1)[0]))
            if len(labels) != batch or min(labels) < 0:
                raise TargetError(
                    "target 'gt' needs a ground-truth label for every sample"
                    ' (none given: use --target pred or a class index)')
            out = torch.tensor(labels)
        else:
            try:
                out = torch.tensor([int(target)] * batch)
            except ValueError:
                raise TargetError(
                    f"unknown target '{target}': use 'pred', 'gt', a class "
                    f"(output) index in 0..{num_classes - 1}, 'output:N' or "
                    'a callable of the scores') from None
    elif isinstance(target, int):
        out = torch.tensor([target] * batch)
    else:
        out = torch.as_tensor(target).view(-1).long()
        if out.numel() == 1:
            out = out.repeat(batch)
        if out.numel() != batch:
            raise TargetError(
                f'{out.numel()} targets given for a batch of {batch}')
    bad = [int(c) for c in out if not 0 <= int(c) < num_classes]
    if bad:
        raise TargetError(
            f'class {bad[0]} is out of range: the model has {num_classes} '
            f'classes (0..{num_classes - 1})')
    return out.long().to(scores.device)


class TargetFunction:
    """A callable target, checked: ``f(scores [N, K]) -> [N]`` (or
    ``[N, 1]``), differentiable where its input is."""

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        self.fn = fn
        self.name = describe_target(fn)

    def __call__(self, scores: Tensor) -> Tensor:
        out = self.fn(scores)
        if not isinstance(out, Tensor):
            raise TargetError(f'target {self.name} must return a tensor '
                              f'[N] of scores [N, K], got '
                              f'{type(out).__name__}')
        n = scores.shape[0]
        if out.dim() == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if tuple(out.shape) != (n, ):
            raise TargetError(
                f'target {self.name} must map scores {list(scores.shape)} to '
                f'[{n}] (one value per clip), got {list(out.shape)}')
        if scores.requires_grad and not out.requires_grad:
            raise TargetError(f'target {self.name} is not differentiable in '
                              'the scores (arg-max, .item(), a detached '
                              'tensor?): gradient methods need it to be')
        return out


class TargetOutputAdapter:
    """The model seen through a callable target: one output
    ``F = 1/V sum_v f(s_v)``.

    ``s_v`` is view ``v``'s pre-softmax score ``[K]`` as the wrapped
    adapter reports it per view (``scores(per_view=True)``): ``F`` is
    ``f`` of the view-averaged score exactly for one view or an ``f``
    linear in the scores (an index, a difference of classes), and it is a
    mean of per-view terms like the class scores, so view chunks and the
    perturbation methods' view scorer stay exact. Everything but the
    scores (layout, layers, upsampling) is the wrapped adapter's.

    ``probs`` raises: a probability of one output is always 1.
    """

    def __init__(self, adapter, fn: TargetFunction):
        self.base = adapter
        self.target_function = fn

    def __getattr__(self, name: str):
        if name in ('base', 'target_function'):  # not set yet (copying)
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def num_classes(self) -> int:
        return 1

    @property
    def pred_uses_probs(self) -> bool:
        return False

    def scores(self, inputs: Tensor, per_view: bool = False,
               **kwargs) -> Tensor:
        """``[B, 1]`` ``F`` (``[B, S, 1]`` per view with ``per_view``)."""
        per = self.base.scores(inputs, per_view=True, **kwargs)  # [B, S, K]
        out = self.target_function(per.flatten(0, 1)).view(
            *per.shape[:2], 1)
        return out if per_view else out.mean(1)

    def probs(self, inputs: Tensor) -> Tensor:
        raise TargetError(
            f'target {self.target_function.name}: a probability of one '
            "output is always 1: use score='logit'")

    def scores_and_probs(self, inputs: Tensor):
        """``F`` ``[B, 1]`` and its (constant) probability ``[B, 1]``
        (from the per-view scores, as the wrapped adapters do: a view
        chunk's scaling of :meth:`scores` applies once)."""
        scores = self.scores(inputs, per_view=True).mean(1)
        return scores, torch.ones_like(scores, dtype=torch.float)


def check_score_kind(method: str, score: Optional[str],
                     num_outputs: Optional[int]) -> None:
    """One line when a method would explain ``score='prob'`` of a model
    with one output (a regression head, a callable target): the softmax
    of one output is 1 everywhere, every map would be 0."""
    if score == 'prob' and num_outputs == 1:
        raise TargetError(
            f"{method}: score='prob' of a single output (a regression head "
            "or a callable target) is always 1: use score='logit'")
