"""Model parameter randomisation test (Adebayo et al. 2018), plain functions.

Layers are re-initialised top-down on a copy of the model; a method that
explains the model (not just the input) gives maps whose rank correlation
with the trained model's maps drops.
"""
import copy
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..utils.layers import get_layer

__all__ = ['rank_correlation', 'randomize_layers', 'randomized_copy',
           'cascading_randomization', 'default_cascade', 'executed_children',
           'is_norm']


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two maps of any (equal) shape.

    A constant map has no ranking: against a non-constant one the
    correlation is 0, two constant maps give 1.
    """
    from scipy.stats import spearmanr
    x = torch.as_tensor(a).detach().float().cpu().reshape(-1).numpy()
    y = torch.as_tensor(b).detach().float().cpu().reshape(-1).numpy()
    if x.shape != y.shape:
        raise MMXAIError(f'maps of {x.size} and {y.size} values cannot be '
                         'compared')
    cx, cy = np.ptp(x) == 0, np.ptp(y) == 0
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(spearmanr(x, y).statistic)


def randomize_layers(model: nn.Module, layers: Sequence[str],
                     seed: int = 0) -> nn.Module:
    """Re-initialise, in place, every parameter of the named modules.

    Modules with ``reset_parameters`` (convolutions, linear layers, norms)
    use it (norm running statistics are reset too); remaining parameters
    (e.g. attention biases, class tokens) are drawn from N(0, 0.02^2).
    Deterministic for a given ``seed``. Returns ``model``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            root = get_layer(model, name)
            done = set()
            for m in root.modules():
                if hasattr(m, 'reset_parameters') and callable(
                        m.reset_parameters):
                    m.reset_parameters()
                    done.update(id(p) for p in m.parameters(recurse=False))
                if hasattr(m, 'reset_running_stats'):
                    m.reset_running_stats()
            with torch.no_grad():
                for p in root.parameters():
                    if id(p) not in done:
                        p.normal_(0.0, 0.02)
    return model


def randomized_copy(model: nn.Module, layers: Sequence[str],
                    seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with ``layers`` re-initialised
    (:func:`randomize_layers`); ``model`` is untouched."""
    return randomize_layers(copy.deepcopy(model), layers, seed)


def cascading_randomization(
        explain: Callable[[nn.Module], Tensor], model: nn.Module,
        cascade: Sequence[str], seed: int = 0,
        reference: Optional[Tensor] = None) -> List[Dict[str, object]]:
    """Randomise ``cascade`` top-down, cumulatively, and compare maps.

    Args:
        explain: ``model -> maps`` (any shape, the same for every model; the
            target class must be fixed, not the randomised model's
            prediction).
        model: the trained recognizer (not modified).
        cascade: module names from the top (e.g. ``['cls_head',
            'backbone.layer4', ...]``).
        reference: maps of the trained model (computed if None).
    Returns:
        One dict per step: ``layers`` (randomised so far), ``spearman``
        (rank correlation with the trained model's maps; one value per
        leading map if the maps are batched ``[B, ...]``, averaged) and
        ``per_sample`` (those values).
    """
    if not cascade:
        raise MMXAIError('the randomisation cascade names no layer')
    ref = explain(model) if reference is None else reference
    work = copy.deepcopy(model)
    out, done = [], []
    for i, name in enumerate(cascade):
        randomize_layers(work, [name], seed + i)
        done.append(name)
        maps = explain(work)
        rho = [rank_correlation(a, b) for a, b in zip(ref, maps)] \
            if ref.dim() > 3 else [rank_correlation(ref, maps)]
        out.append(dict(layers=list(done), spearman=float(np.mean(rho)),
                        per_sample=[float(r) for r in rho]))
    return out


def _tensors(x) -> List[Tensor]:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    return []


def executed_children(module: nn.Module, run: Callable[[], object]
                      ) -> List[str]:
    """Names of ``module``'s direct children that shape ``run()``'s result,
    in the order ``run()`` first runs them.

    A child runs when it or any module inside it is called (a
    ``ModuleList`` of blocks is never called itself); it shapes the result
    when the gradient of the result reaches a tensor made inside it (its
    own output or, for a never-called container, its last block's). A
    child that never runs, or runs but is discarded (e.g. a MobileNetV2's
    ``conv2`` when ``out_indices`` stops earlier), is left out. ``run()``
    must return the result with autograd on; the hooks are removed on
    return, also on failure, and no parameter's ``.grad`` is touched.
    """
    order: List[str] = []
    made: Dict[str, List[Tensor]] = {}
    handles = []
    for name, child in module.named_children():
        def pre(_m, _i, name=name):
            if name not in order:
                order.append(name)

        def post(_m, _i, out, name=name):
            made[name] = [t for t in _tensors(out) if t.requires_grad]
        for sub in child.modules():
            handles.append(sub.register_forward_pre_hook(pre))
            handles.append(sub.register_forward_hook(post))
    try:
        result = [t for t in _tensors(run()) if t.requires_grad]
    finally:
        for h in handles:
            h.remove()
    if not result:  # nothing to follow: everything that ran
        return order
    names = [n for n in order if made.get(n)]
    flat = [t for n in names for t in made[n]]
    if not flat:
        return order
    with torch.enable_grad():  # also when called under no_grad (test loop)
        total = sum(r.float().sum() for r in result)
        grads = torch.autograd.grad(total, flat, allow_unused=True)
    used, k = set(), 0
    for n in names:
        g = grads[k:k + len(made[n])]
        k += len(made[n])
        if any(x is not None for x in g):
            used.add(n)
    return [n for n in order if n in used]


def default_cascade(model: nn.Module, inputs: Optional[Tensor] = None
                    ) -> List[str]:
    """Top-down randomisation cascade of a recognizer: ``cls_head``, the
    neck, then the backbone's top-level modules that hold parameters, last
    first (for ResNets: ``layer4`` ... ``conv1``).

    With ``inputs`` (a preprocessed batch, ``[B, V, C, T, H, W]`` or the
    toolbox's shape) the backbone's order is the order its children *run*
    in one probe through ``extract_feat``, and children that never
    run are dropped (e.g. a ResNet-TSM's unused ``conv2``, an extra stage
    the config disables, a MobileNetV2's ``conv2`` that runs but is not
    returned): randomising them would change nothing; see
    :func:`executed_children` (one forward and backward of one view). Without
    ``inputs`` it is the registration order, which is the forward order in
    MMAction2's CNN backbones; a backbone that registers modules out of
    forward order still ends with every listed module randomised, only the
    intermediate steps differ.
    """
    def has_params(m: nn.Module) -> bool:
        return any(True for _ in m.parameters())

    out = [n for n in ('cls_head', 'neck')
           if isinstance(getattr(model, n, None), nn.Module)
           and has_params(getattr(model, n))]
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):
        kids = [n for n, m in backbone.named_children() if has_params(m)]
        if inputs is not None and hasattr(model, 'extract_feat'):
            x = inputs[:1, :1] if inputs.dim() == 6 else inputs[:1]

            def run():
                with torch.enable_grad():
                    return model.extract_feat(
                        x.detach().float().requires_grad_(True),
                        test_mode=True)
            ran = executed_children(backbone, run)
            kids = [n for n in ran if n in kids]
        out += [f'backbone.{n}' for n in reversed(kids)]
    if not out:
        raise MMXAIError(f'{type(model).__name__} has no cls_head, neck or '
                         'backbone to randomise; pass cascade=[...] '
                         '(module names, top first)')
    return out


def is_norm(module: nn.Module) -> bool:
    """A bare normalisation layer (BatchNorm, LayerNorm, GroupNorm, ...)."""
    from torch.nn.modules.batchnorm import _NormBase
    return isinstance(module, (_NormBase, nn.LayerNorm, nn.GroupNorm))
