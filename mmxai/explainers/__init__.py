"""Explanation methods, each registered in ``mmxai.registry.EXPLAINERS``.

Every module of this package is imported here, so a new method only needs
its own file: a ``BaseExplainer`` subclass registered with
``@EXPLAINERS.register_module()`` and a ``name`` (its CLI method name).
"""
import importlib
import pkgutil
from typing import Dict, Union

from torch import nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .base import BaseExplainer
from .explanation import Explanation
from .gradcam import GradCAM, GradCAMPlusPlus
from .saliency_tubes import SaliencyTubes
from .targets import resolve_targets

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')


def method_names() -> Dict[str, str]:
    """CLI/API method names (each class's ``name``) -> registered names."""
    names = {}
    for reg_name, cls in EXPLAINERS.module_dict.items():
        alias = getattr(cls, 'name', None)
        if alias and alias != 'base':
            names[alias] = reg_name
    names.setdefault('gradcampp', 'GradCAMPlusPlus')
    return names


def build_explainer(cfg: Union[str, dict], model: nn.Module,
                    **kwargs) -> BaseExplainer:
    """Build an explainer for ``model`` from a method name or config dict.

    ``build_explainer('gradcam', model, target_layers=['backbone.layer4'])``
    or ``build_explainer(dict(type='GradCAM', weighting='temporal'), model)``.
    """
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    kind = cfg.get('type', '')
    if isinstance(kind, str):
        kind = kind[len('mmxai.'):] if kind.startswith('mmxai.') else kind
        aliases = method_names()
        kind = aliases.get(kind.lower(), aliases.get(kind, kind))
        if kind not in EXPLAINERS.module_dict:
            raise MMXAIError(
                f"unknown method '{cfg.get('type')}'; available: "
                f"{', '.join(sorted(aliases))}")
    cfg['type'] = kind
    cfg.setdefault('_scope_', 'mmxai')  # whatever the default scope is
    cfg.update(kwargs)
    cfg['model'] = model
    return EXPLAINERS.build(cfg)


__all__ = ['BaseExplainer', 'Explanation', 'GradCAM', 'GradCAMPlusPlus',
           'SaliencyTubes', 'build_explainer', 'method_names',
           'resolve_targets']
