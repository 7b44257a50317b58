"""Canonizers for LRP on MMAction2's CNNs: what layers LRP covers, batch
norm merged into the convolution before it, residual sums split.

Nothing here changes a parameter: merged parameters are new tensors
(:func:`merged_parameters`) and a residual block's split sum is an instance
``forward`` put in place inside :func:`split_residual_sums` and removed on
exit (also on failure), so the model is left bit for bit as found.
"""
import contextlib
import functools
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from .lrp_rules import swap_gradient, stabilize

#: Leaf layers the rules cover (affine layers get a rule, batch norm is
#: merged, the rest pass relevance on as the gradient does).
RULE_LAYERS = (_ConvNd, nn.Linear)
PASS_LAYERS = (_BatchNorm, nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
               nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
               nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
               nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
               nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Dropout,
               nn.Dropout2d, nn.Dropout3d, nn.Identity, nn.Flatten)
#: Leaf modules of MMAction2 heads that only average (the consensus).
PASS_NAMES = ('AvgConsensus', )
#: Containers whose forward applies non-linear functions of their own
#: (attention, gates): not covered even when their leaves are.
UNSUPPORTED_CONTAINERS = ('NonLocal3d', 'NonLocal2d', 'NonLocal1d',
                          'SEModule', 'TAM', 'TemporalInterlace',
                          'RelationModule', 'RelationModuleMultiScale')
#: Gates treated as constants by :func:`constant_gates` (X3D): the
#: squeeze-excitation module and Swish.
GATES = ('SEModule', 'Swish')
#: Model parts that are not on the path of the scores.
_SKIPPED = ('data_preprocessor', 'loss')


def unsupported_layers(model: nn.Module, gates: bool = False) -> List[str]:
    """Sorted type names of the layers LRP here does not cover (``gates``:
    :data:`GATES` are, as constants, and so is what is inside them)."""
    bad = set()
    inside = [name for name, m in model.named_modules()
              if gates and type(m).__name__ in GATES]
    for name, m in model.named_modules():
        if any(part.startswith(_SKIPPED) for part in name.split('.')):
            continue
        kind = type(m).__name__
        if gates and (kind in GATES or any(
                name.startswith(g + '.') for g in inside)):
            continue
        if kind in UNSUPPORTED_CONTAINERS:
            bad.add(kind)
        elif next(m.children(), None) is None and name and not isinstance(
                m, (nn.ModuleList, nn.ModuleDict, nn.Sequential)) and not (
                (isinstance(m, RULE_LAYERS) and
                 not isinstance(m, _ConvTransposeNd)) or
                isinstance(m, PASS_LAYERS) or kind in PASS_NAMES):
            bad.add(kind)
    return sorted(bad)


def layer_fn(module: nn.Module):
    """``fn(x, weight, bias)``: the layer's map with other parameters."""
    if isinstance(module, nn.Linear):
        return nn.functional.linear
    return module._conv_forward


def batchnorm_pairs(model: nn.Module) -> Dict[nn.Module, nn.Module]:
    """``{batch norm: the convolution whose output it normalises}``:
    mmcv ``ConvModule`` with ``conv`` before ``norm`` (for a
    ``Conv2plus1d`` conv: its ``conv_t``), ``Conv2plus1d``'s own ``conv_s``
    -> ``bn_s``, and a convolution directly followed by batch norm in an
    ``nn.Sequential``. The pairing is checked at run time (the norm's input
    must be that convolution's output)."""
    pairs = {}
    for m in model.modules():
        kind = type(m).__name__
        if kind == 'Conv2plus1d' and isinstance(
                getattr(m, 'bn_s', None), _BatchNorm):
            pairs[m.bn_s] = m.conv_s
        if kind == 'ConvModule' and getattr(m, 'with_norm', False):
            order = tuple(getattr(m, 'order', ()))
            norm = getattr(m, getattr(m, 'norm_name', ''), None)
            conv = getattr(m, 'conv', None)
            if type(conv).__name__ == 'Conv2plus1d':
                conv = conv.conv_t
            if isinstance(norm, _BatchNorm) and isinstance(conv, _ConvNd) \
                    and 'conv' in order and 'norm' in order and \
                    order.index('conv') < order.index('norm'):
                pairs[norm] = conv
        if isinstance(m, nn.Sequential):
            kids = list(m.children())
            for a, b in zip(kids, kids[1:]):
                if isinstance(a, _ConvNd) and isinstance(b, _BatchNorm):
                    pairs[b] = a
    return pairs


def merged_parameters(conv: nn.Module, bn: _BatchNorm
                      ) -> Tuple[Tensor, Tensor]:
    """``(w', b')`` of ``bn(conv(x)) = conv(x; w', b')`` in eval mode:
    ``a = gamma / sqrt(var + eps)``, ``w' = a w`` (per output channel),
    ``b' = a (b - mean) + beta``. New tensors; the model is untouched."""
    w = conv.weight.detach()
    mean = bn.running_mean if bn.running_mean is not None else \
        torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    var = bn.running_var if bn.running_var is not None else \
        torch.ones_like(mean)
    a = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight.detach()
    shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(a)
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(a)
    return w * a.view(-1, *([1] * (w.dim() - 1))), a * (b - mean) + shift


def residual_sum(branch: Tensor, shortcut: Tensor, eps: float) -> Tensor:
    """``y = branch + shortcut`` (the same value) whose relevance is split
    by the epsilon-stabilised z-rule: ``R_branch = branch / stab(y) R_y``,
    ``R_shortcut = shortcut / stab(y) R_y`` (zennit's ``Norm`` on its
    ``Sum``)."""
    y = branch + shortcut
    yd = y.detach()
    return swap_gradient(y, y * (yd / stabilize(yd, eps)))


def _split_forward(block: nn.Module, convs: Tuple[str, ...], eps: float,
                   x: Tensor) -> Tensor:
    """The block's forward (MMAction2's ``BasicBlock3d``/``Bottleneck3d``,
    2D ``BasicBlock``/``Bottleneck``) with the sum split."""
    identity = x
    out = x
    for name in convs:
        out = getattr(block, name)(out)
    if block.downsample is not None:
        identity = block.downsample(x)
    return block.relu(residual_sum(out, identity, eps))


def residual_blocks(model: nn.Module) -> List[Tuple[nn.Module, Tuple]]:
    """``[(block, conv names)]`` of the residual blocks whose forward is
    MMAction2's own (subclasses that keep it, e.g. CSN's, included)."""
    from mmaction.models.backbones import resnet, resnet3d
    kinds = [(resnet3d.BasicBlock3d, ('conv1', 'conv2')),
             (resnet3d.Bottleneck3d, ('conv1', 'conv2', 'conv3')),
             (resnet.BasicBlock, ('conv1', 'conv2')),
             (resnet.Bottleneck, ('conv1', 'conv2', 'conv3'))]
    found = []
    for m in model.modules():
        for base, convs in kinds:
            if isinstance(m, base) and type(m).forward is base.forward:
                found.append((m, convs))
                break
    return found


@contextlib.contextmanager
def instance_forwards(pairs: Iterable[Tuple[nn.Module, Callable]]
                      ) -> Iterator[int]:
    """Inside the block each ``module.forward`` is the given callable (an
    instance attribute); yields how many; on exit (also on error) each
    module's own ``forward`` (or an earlier instance one) is back."""
    patched: List[Tuple[nn.Module, Optional[object]]] = []
    try:
        for module, forward in pairs:
            patched.append((module, module.__dict__.get('forward')))
            module.forward = forward
        yield len(patched)
    finally:
        for module, before in patched:
            if before is None:
                module.__dict__.pop('forward', None)
            else:
                module.forward = before


@contextlib.contextmanager
def split_residual_sums(model: nn.Module, eps: float = 1e-6
                        ) -> Iterator[int]:
    """Inside the block every residual block of :func:`residual_blocks`
    (without a non-local block) adds through :func:`residual_sum`; yields
    how many. The instance ``forward`` is removed on exit, whatever
    happened."""
    with instance_forwards(
            (block, functools.partial(_split_forward, block, convs, eps))
            for block, convs in residual_blocks(model)
            # non-local blocks are refused by unsupported_layers
            if not getattr(block, 'non_local', False)) as count:
        yield count


def _se_forward(se: nn.Module, x: Tensor) -> Tensor:
    """X3D's ``SEModule.forward`` with the gate detached (same value)."""
    gate = se.sigmoid(se.fc2(se.relu(se.fc1(se.avg_pool(x)))))
    return x * gate.detach()


def _swish_forward(x: Tensor) -> Tensor:
    """mmcv's ``Swish`` (``x * sigmoid(x)``) with the gate detached."""
    return x * torch.sigmoid(x).detach()


@contextlib.contextmanager
def constant_gates(model: nn.Module) -> Iterator[int]:
    """Inside the block X3D's gates (``SEModule``, ``Swish``) multiply by
    a detached gate: ``y = x * s`` hands all of ``R_y`` to ``x`` (``R_x = x
    s g = R_y``, the "signal takes all" treatment of gates); values are
    unchanged. Yields how many; the instance ``forward`` removed on exit."""
    with instance_forwards(
            (m, functools.partial(_se_forward, m)
             if type(m).__name__ == 'SEModule' else _swish_forward)
            for m in model.modules()
            if type(m).__name__ in GATES) as count:
        yield count
