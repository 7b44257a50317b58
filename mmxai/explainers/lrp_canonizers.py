"""Canonizers for LRP on MMAction2's CNNs: what layers LRP covers, batch
norm merged into the convolution before it, residual sums split.

Nothing here changes a parameter: merged parameters are new tensors
(:func:`merged_parameters`) and a residual block's split sum is an instance
``forward`` put in place inside :func:`split_residual_sums` and removed on
exit (also on failure), so the model is left bit for bit as found.
"""
import collections
import contextlib
import functools
from typing import (Callable, Dict, Iterable, Iterator, List, NamedTuple,
                    Optional, Tuple)

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from ..errors import UnsupportedModelError
from .lrp_rules import epsilon_relu, epsilon_scale, scale_gradient

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


def relus_after(pairs: Dict[nn.Module, nn.Module], model: nn.Module
                ) -> Dict[nn.Module, nn.Module]:
    """``{bn: relu}`` for the pairs inside an mmcv ``ConvModule`` whose
    order is conv, norm, act with an ``nn.ReLU``: the ReLU is the only
    reader of the batch norm's output."""
    out = {}
    for m in model.modules():
        if type(m).__name__ != 'ConvModule' or not getattr(
                m, 'with_norm', False):
            continue
        norm = getattr(m, m.norm_name, None)
        act = getattr(m, 'activate', None)
        if norm in pairs and type(act) is nn.ReLU and getattr(
                m, 'with_activation', False) and tuple(
                getattr(m, 'order', ())) == ('conv', 'norm', 'act'):
            out[norm] = act
    return out


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


def _read_tensors(conv: nn.Module, bn: _BatchNorm) -> tuple:
    """What :func:`merged_parameters` reads, and the batch norm's batch
    counter (training moves the running statistics without a version
    change, but always adds one to the counter, in place)."""
    return (conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
            bn.running_var, bn.num_batches_tracked)


def _state(tensors: tuple) -> tuple:
    return tuple(None if t is None else (t.data_ptr(), t._version)
                 for t in tensors)


class MergedParameters:
    """:func:`merged_parameters` per (convolution, batch norm) pair,
    cached while neither changes, so that a model explained again does
    not refold its weights. Still valid: the same storages (the cache
    keeps them alive, so no other tensor can reuse their address) at the
    same version counters; an in-place update, an optimiser step,
    ``load_state_dict``, ``reset_parameters``, ``.to()`` and a training
    forward of the batch norm all change one. Not seen: writes through
    ``.data`` (no version change): :meth:`clear` after those. Holds one
    copy of the paired convolutions' weights."""

    def __init__(self):
        self._cache: Dict[nn.Module, tuple] = {}

    def __call__(self, conv: nn.Module, bn: _BatchNorm
                 ) -> Tuple[Tensor, Tensor]:
        tensors = _read_tensors(conv, bn)
        state = (bn, bn.eps, _state(tensors))
        hit = self._cache.get(conv)
        if hit is None or hit[0] != state:
            with torch.no_grad():
                w, b = merged_parameters(conv, bn)
            alive = tuple(None if t is None else t.detach() for t in tensors)
            hit = self._cache[conv] = (state, alive, w, b)
        return hit[2], hit[3]

    def clear(self) -> None:
        """Forget every merged pair (after writes through ``.data``)."""
        self._cache.clear()


def foldable(bn: _BatchNorm) -> bool:
    """Eval-mode batch norm with running statistics: an affine map."""
    return not bn.training and bn.running_mean is not None and \
        bn.running_var is not None


def _folded_conv_forward(conv: nn.Module, weight: Tensor, bias: Tensor,
                         outputs: dict, x: Tensor) -> Tensor:
    out = conv._conv_forward(x, weight, bias)
    outputs[conv] = (x, out)
    return out


def _pass_on(bn: nn.Module, conv: nn.Module, x: Optional[Tensor],
             z: Optional[Tensor], given: Tensor) -> Tensor:
    """The folded batch norm's default: ``z`` (its convolution's output,
    which must be what it was given)."""
    if z is None or given is not z:
        raise UnsupportedModelError(
            f'LRP: a {type(bn).__name__} does not directly follow its '
            'convolution; use canonize=False')
    return z


def _folded_norm_forward(bn: nn.Module, conv: nn.Module, after: Callable,
                         outputs: dict, given: Tensor) -> Tensor:
    x, z = outputs.pop(conv, (None, None))
    return after(bn, conv, x, z, given)


class FoldedBatchNorms(NamedTuple):
    """What :func:`folded_batchnorms` folded: ``pairs`` ``{bn: conv}``,
    and ``outputs`` ``{conv: (x, z)}``: folded outputs their batch norm
    has not read yet (empty after a forward of a well-formed model)."""
    pairs: Dict[nn.Module, nn.Module]
    outputs: Dict[nn.Module, Tuple[Tensor, Tensor]]


@contextlib.contextmanager
def folded_batchnorms(pairs: Dict[nn.Module, nn.Module],
                      merged: Callable = merged_parameters,
                      after: Callable = _pass_on
                      ) -> Iterator[FoldedBatchNorms]:
    """Inside the block each ``{bn: conv}`` pair of ``pairs`` whose batch
    norm is :func:`foldable` (and whose convolution is in no other pair)
    computes ``bn(conv(x))`` as one convolution with ``merged(conv, bn)``
    (``w' = a w``, ``b' = a (b - mean) + beta``: equal up to float
    rounding) and the batch norm returns ``after(bn, conv, x, z, given)``
    for the convolution's input ``x``, output ``z`` and its own input
    ``given`` (default: ``z``, checking ``given is z``): one layer where
    there were two, no batch norm pass forward or backward. Every
    instance ``forward`` removed on exit, also on failure. Parameters are
    never written."""
    uses = collections.Counter(pairs.values())
    folded = FoldedBatchNorms({bn: conv for bn, conv in pairs.items()
                               if foldable(bn) and uses[conv] == 1}, {})
    patches = []
    for bn, conv in folded.pairs.items():
        w, b = merged(conv, bn)
        patches += [(conv, functools.partial(_folded_conv_forward, conv, w,
                                             b, folded.outputs)),
                    (bn, functools.partial(_folded_norm_forward, bn, conv,
                                           after, folded.outputs))]
    with instance_forwards(patches):
        yield folded


def residual_sum(branch: Tensor, shortcut: Tensor, eps: float) -> Tensor:
    """``y = branch + shortcut`` (the same value) whose relevance is split
    by the epsilon-stabilised z-rule: ``R_branch = branch / stab(y) R_y``,
    ``R_shortcut = shortcut / stab(y) R_y`` (zennit's ``Norm`` on its
    ``Sum``): the gradient at ``y`` times ``y / stab(y)``, then the sum's
    own backward (no extra node in the forward)."""
    y = branch + shortcut
    return scale_gradient(y, epsilon_scale(y, eps))


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
    if type(block.relu) is nn.ReLU:  # the split and ReLU in one node
        return epsilon_relu(out + identity, eps)
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
            own = module.__dict__
            patched.append((own, own.get('forward')))
            own['forward'] = forward  # what nn.Module.__setattr__ does
        yield len(patched)
    finally:
        for own, before in patched:
            if before is None:
                own.pop('forward', None)
            else:
                own['forward'] = before


@contextlib.contextmanager
def split_residual_sums(model: nn.Module, eps: float = 1e-6,
                        blocks: Optional[List[Tuple[nn.Module, Tuple]]] = None
                        ) -> Iterator[int]:
    """Inside the block every residual block of :func:`residual_blocks`
    (``blocks``: that list, found before) without a non-local block adds
    through :func:`residual_sum`; yields how many. The instance
    ``forward`` is removed on exit, whatever happened."""
    with instance_forwards(
            (block, functools.partial(_split_forward, block, convs, eps))
            for block, convs in (residual_blocks(model) if blocks is None
                                 else blocks)
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
def constant_gates(model: nn.Module,
                   gates: Optional[List[nn.Module]] = None) -> Iterator[int]:
    """Inside the block X3D's gates (``SEModule``, ``Swish``; ``gates``:
    those modules, found before) multiply by a detached gate: ``y = x * s``
    hands all of ``R_y`` to ``x`` (``R_x = x s g = R_y``, the "signal takes
    all" treatment of gates); values are unchanged. Yields how many; the
    instance ``forward`` removed on exit."""
    with instance_forwards(
            (m, functools.partial(_se_forward, m)
             if type(m).__name__ == 'SEModule' else _swish_forward)
            for m in (gate_modules(model) if gates is None else gates)
            ) as count:
        yield count


def gate_modules(model: nn.Module) -> List[nn.Module]:
    """The modules :func:`constant_gates` treats (:data:`GATES`)."""
    return [m for m in model.modules() if type(m).__name__ in GATES]
