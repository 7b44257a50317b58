"""Method names and :func:`build_explainer`.

Naming rule: a method's CLI/API name is the snake_case of its class name
(``SaliencyTubes`` -> ``saliency_tubes``), unless :data:`METHOD_ALIASES`
lists names for the class: then the first is its name (in outputs) and the
others are accepted too. A class that sets ``name`` itself (a plugin) keeps
it. Registered names (``'GradCAM'``) are always accepted.
"""
import difflib
import inspect
import re
from typing import (TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple,
                    Union)

from torch import nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS

if TYPE_CHECKING:
    from .base import BaseExplainer

#: The one table of names that are not the class name in snake_case:
#: class name -> (its name, other accepted names).
METHOD_ALIASES: Dict[str, Tuple[str, ...]] = {
    'GradCAM': ('gradcam', ),
    'GradCAMPlusPlus': ('gradcam++', 'gradcampp'),
    'CaptumExplainer': ('captum', ),
    'ClassFeaturePyramid': ('cfp', ),
    'Occlusion3D': ('occlusion', ),
    'RISE3D': ('rise', ),
    'SmoothGrad': ('smoothgrad', ),
    'SupervoxelLIME': ('lime', ),
    'SupervoxelKernelSHAP': ('kernel_shap', ),
    'SupervoxelLOCO': ('loco', 'supervoxel_loco'),
    'SupervoxelUnivariate': ('univariate', 'supervoxel_univariate', 'up'),
    'XGradCAM': ('xgradcam', 'x_grad_cam'),
    'LayerCAM': ('layercam', 'layer_cam'),
    'HiResCAM': ('hirescam', 'hi_res_cam'),
    'GradCAMElementWise': ('gradcam_elementwise', 'grad_cam_element_wise'),
    'ScoreCAM': ('scorecam', 'score_cam'),
    'EigenCAM': ('eigencam', 'eigen_cam'),
    'EigenGradCAM': ('eigengradcam', 'eigen_grad_cam'),
    'AblationCAM': ('ablationcam', 'ablation_cam'),
    'SmoothGradCAMPlusPlus': ('smooth_gradcam++', 'smooth_gradcampp'),
    'FinerCAM': ('finer_cam', 'finercam'),
    'LeGrad': ('legrad', 'le_grad'),
    'SWAGV': ('swag_v', 'swagv'),
}

_WORD = re.compile(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])')


def snake_case(class_name: str) -> str:
    """``'SaliencyTubes'`` -> ``'saliency_tubes'``, ``'STEP'`` -> ``'step'``."""
    return _WORD.sub('_', class_name).lower()


def method_name(class_name: str) -> str:
    """The CLI/API name of an explainer class, by the naming rule."""
    return METHOD_ALIASES.get(class_name, (snake_case(class_name), ))[0]


def method_names() -> Dict[str, str]:
    """Accepted CLI/API method names -> registered names: each registered
    class's ``name`` (registration order), then the other aliases."""
    names: Dict[str, str] = {}
    classes = [(reg, cls) for reg, cls in EXPLAINERS.module_dict.items()
               if getattr(cls, 'name', None) not in (None, 'base')]
    for reg_name, cls in classes:
        names[cls.name] = reg_name
    for reg_name, cls in classes:
        for alias in METHOD_ALIASES.get(cls.__name__, ())[1:]:
            names.setdefault(alias, reg_name)
    return names


def build_explainer(cfg: Union[str, dict], model: nn.Module,
                    **kwargs) -> 'BaseExplainer':
    """Build an explainer for ``model`` from a method name or config dict.

    ``build_explainer('gradcam', model, target_layers=['backbone.layer4'])``
    or ``build_explainer(dict(type='GradCAM', weighting='temporal'), model)``.
    Names are matched case-insensitively; ``'mmxai.'`` prefixes are dropped.
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
    cls = EXPLAINERS.get(kind) if isinstance(kind, str) else kind
    if isinstance(cls, type):
        _check_options(cls, [k for k in cfg if k not in ('type', '_scope_',
                                                         'model')])
        _check_kinds(cls, {k: v for k, v in cfg.items()
                           if k not in ('type', '_scope_', 'model')})
    return EXPLAINERS.build(cfg)


def _defaults(cls: type) -> Dict[str, object]:
    """Default values of the settings of ``cls`` and of the bases its
    ``**kwargs`` reaches (the first one found wins), leaving out those
    annotated as accepting text."""
    out: Dict[str, object] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.default is not inspect.Parameter.empty and \
                    'str' not in str(p.annotation):  # text is accepted
                out.setdefault(p.name, p.default)
    return out


def _check_kinds(cls: type, given: Dict[str, object]) -> None:
    """One line for a setting whose default is a number or a bool and
    whose value is text (``--method-options num_masks=abc``)."""
    defaults = _defaults(cls)
    for key, value in given.items():
        default = defaults.get(key)
        if not isinstance(value, str) or default is None:
            continue
        if isinstance(default, bool):
            want = 'true or false'
        elif isinstance(default, (int, float)):
            want = f'a number like {default!r}'
        else:
            continue
        raise MMXAIError(f'{method_name(cls.__name__)}: option '
                         f'{key}={value!r} must be {want}')


def method_options(cls: type) -> Optional[List[str]]:
    """The keyword settings ``cls`` accepts, without ``model``: its own
    and those of the bases its ``**kwargs`` is passed on to (and of the
    classes in its ``options_of``: methods it wraps). ``None`` when
    it takes free-form settings (a ``**`` not named ``kwargs``, e.g. the
    Captum wrapper's ``**attribute_kwargs``)."""
    names: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names += [p.name for p in params if p.name not in ('self', 'model')
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in names]
        var = [p.name for p in params if p.kind == p.VAR_KEYWORD]
        if not var:
            break  # this __init__ passes no settings further up
        if var[0] != 'kwargs':
            return None  # free-form settings
    for other in getattr(cls, 'options_of', ()):  # a wrapped base method
        names += [n for n in (method_options(other) or []) if n not in names]
    return names


def _check_options(cls: type, given: Sequence[str]) -> None:
    """One line for an unknown setting, with a did-you-mean."""
    known = method_options(cls)
    if known is None:
        return
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            raise MMXAIError(
                f"{method_name(cls.__name__)}: unknown option '{key}'{hint} "
                f"(options: {', '.join(known)})")
