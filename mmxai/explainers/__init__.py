"""Explanation methods, each registered in ``mmxai.registry.EXPLAINERS``."""
from typing import Union

from torch import nn

from ..registry import EXPLAINERS
from .base import BaseExplainer
from .explanation import Explanation
from .gradcam import GradCAM, GradCAMPlusPlus
from .saliency_tubes import SaliencyTubes
from .targets import resolve_targets

#: CLI / API method names -> registered class names.
METHOD_ALIASES = {
    'gradcam': 'GradCAM',
    'gradcam++': 'GradCAMPlusPlus',
    'gradcampp': 'GradCAMPlusPlus',
    'saliency_tubes': 'SaliencyTubes',
}


def build_explainer(cfg: Union[str, dict], model: nn.Module,
                    **kwargs) -> BaseExplainer:
    """Build an explainer for ``model`` from a method name or config dict.

    ``build_explainer('gradcam', model, target_layers=['backbone.layer4'])``
    or ``build_explainer(dict(type='GradCAM', weighting='temporal'), model)``.
    """
    from ..errors import MMXAIError
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    kind = cfg.get('type', '')
    cfg['type'] = METHOD_ALIASES.get(str(kind).lower(), kind)
    if isinstance(cfg['type'], str) and cfg['type'].startswith('mmxai.'):
        cfg['type'] = cfg['type'][len('mmxai.'):]
    if isinstance(cfg['type'], str) and cfg['type'] not in \
            EXPLAINERS.module_dict:
        names = sorted(set(METHOD_ALIASES) | set(EXPLAINERS.module_dict))
        raise MMXAIError(f"unknown method '{kind}'; available: "
                         f"{', '.join(names)}")
    cfg.update(kwargs)
    cfg['model'] = model
    return EXPLAINERS.build(cfg)


__all__ = ['BaseExplainer', 'Explanation', 'GradCAM', 'GradCAMPlusPlus',
           'SaliencyTubes', 'build_explainer', 'resolve_targets',
           'METHOD_ALIASES']
