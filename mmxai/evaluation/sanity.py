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
           'cascading_randomization', 'default_cascade']


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


def default_cascade(model: nn.Module) -> List[str]:
    """Top-down randomisation cascade of a recognizer: ``cls_head``, the
    neck, then the backbone's top-level modules that hold parameters, last
    registered first (for ResNets: ``layer4`` ... ``conv1``).

    Registration order is the forward order in MMAction2's CNN backbones; a
    backbone that registers modules out of forward order still ends with
    every listed module randomised, only the intermediate steps differ.
    """
    def has_params(m: nn.Module) -> bool:
        return any(True for _ in m.parameters())

    out = [n for n in ('cls_head', 'neck')
           if isinstance(getattr(model, n, None), nn.Module)
           and has_params(getattr(model, n))]
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):
        kids = [n for n, m in backbone.named_children() if has_params(m)]
        out += [f'backbone.{n}' for n in reversed(kids)]
    if not out:
        raise MMXAIError(f'{type(model).__name__} has no cls_head, neck or '
                         'backbone to randomise; pass cascade=[...] '
                         '(module names, top first)')
    return out
