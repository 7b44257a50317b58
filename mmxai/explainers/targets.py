"""Resolve ``target=`` ('pred', 'gt', an int, or one per sample) to classes."""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import TargetError

TargetSpec = Union[str, int, Sequence[int], Tensor, None]


def is_pred(target: TargetSpec) -> bool:
    """``target`` asks for the model's prediction."""
    return target is None or (isinstance(target, str) and target == 'pred')


def pred_basis(adapter, probs: Optional[Tensor]) -> Optional[Tensor]:
    """``probs`` when the model's ``predict`` takes its ``pred_label`` from
    the per-view softmax averaged (the head's ``average_clips='prob'``),
    else ``None`` (the arg-max of the view-averaged scores)."""
    return probs if probs is not None and getattr(
        adapter, 'pred_uses_probs', False) else None


def resolve_targets(target: TargetSpec, scores: Tensor,
                    data_samples: Optional[Sequence] = None,
                    probs: Optional[Tensor] = None) -> Tensor:
    """Classes to explain, ``[B]`` long on ``scores``' device.

    Args:
        target: ``'pred'``/None (arg-max of ``probs`` when given, else of
            ``scores``), ``'gt'`` (the samples' ``gt_label``), an int for
            every sample, or B ints.
        scores: ``[B, K]`` class scores.
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
                    f"unknown target '{target}': use 'pred', 'gt' or a class "
                    f'index in 0..{num_classes - 1}') from None
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
