"""Helpers of the gradient methods: frozen weights, channel reductions."""
import contextlib
from typing import Iterator

from torch import Tensor, nn

from ..errors import MMXAIError

#: Colour-channel reductions of :func:`reduce_channels`.
REDUCTIONS = ('sum', 'abs_sum', 'max_abs', 'l2')


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters stop requiring gradients inside the block (restored on
    exit): back-propagation to the input skips weight gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)


def reduce_channels(attr: Tensor, reduction: str, dim: int = 2) -> Tensor:
    """Reduce colour channels of ``[B, V, C, T, H, W]`` attributions.

    ``'sum'`` (keeps completeness), ``'abs_sum'``, ``'max_abs'`` (Simonyan
    et al.'s saliency) or ``'l2'``.
    """
    if reduction == 'sum':
        return attr.sum(dim)
    if reduction == 'abs_sum':
        return attr.abs().sum(dim)
    if reduction == 'max_abs':
        return attr.abs().amax(dim)
    if reduction == 'l2':
        return attr.pow(2).sum(dim).sqrt()
    raise MMXAIError(f"unknown reduction '{reduction}': use sum, abs_sum, "
                     'max_abs or l2')
