"""Config helpers shared by the APIs, tools and tests."""
from pathlib import Path
from typing import Any

#: Config keys that make a model fetch pretrained weights when built, and
#: the value that turns each off.
PRETRAINED_KEYS = {'pretrained2d': False, 'torchvision_pretrain': False,
                   'clip_pretrained': False, 'pretrained_type': None,
                   'pretrain_2d': None}


def _is_pretrained_init(c: Any) -> bool:
    return isinstance(c, dict) and c.get('type') == 'Pretrained'


def strip_pretrained(model_cfg: Any) -> Any:
    """Remove every pretrained-weight source from a model config, in place.

    ``pretrained`` strings become ``None`` (``True`` becomes ``False``), the
    flags in :data:`PRETRAINED_KEYS` are turned off, and ``init_cfg``
    entries of type ``Pretrained`` are dropped at any depth; an ``init_cfg``
    left empty is removed so the module's own default initialisation applies
    (some modules, e.g. MViT, require one). Building then never downloads.
    """
    if isinstance(model_cfg, dict):
        for key in list(model_cfg.keys()):
            value = model_cfg[key]
            if key == 'pretrained' and isinstance(value, (str, Path)):
                model_cfg[key] = None
            elif key == 'pretrained' and value is True:
                model_cfg[key] = False
            elif key in PRETRAINED_KEYS and value:
                model_cfg[key] = PRETRAINED_KEYS[key]
            elif key == 'init_cfg':
                if _is_pretrained_init(value):
                    del model_cfg[key]
                elif isinstance(value, (list, tuple)):
                    kept = [c for c in value if not _is_pretrained_init(c)]
                    if kept:
                        model_cfg[key] = kept
                    else:
                        del model_cfg[key]
            else:
                strip_pretrained(value)
    elif isinstance(model_cfg, (list, tuple)):
        for item in model_cfg:
            strip_pretrained(item)
    return model_cfg
