"""Build a recognizer from a config and load its weights safely."""
import copy
import importlib.util
import os
import os.path as osp
from pathlib import Path
from typing import Optional, Union

import mmengine
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope

from mmxai.checkpoint import load_checkpoint
from mmxai.errors import ConfigError, InputError
from mmxai.utils.config import strip_pretrained

__all__ = ['init_recognizer', 'resolve_config_path', 'strip_pretrained',
           'check_device']


def resolve_config_path(config: Union[str, Path]) -> str:
    """Turn ``'mmaction::recognition/tsn/x.py'`` into the packaged file.

    ``<pkg>::<rel>`` resolves to ``<pkg dir>/.mim/configs/<rel>`` (where
    OpenMMLab wheels ship their configs); other paths are returned as given.

    Raises:
        InputError: the package or the file does not exist.
    """
    config = os.fspath(config)
    if '::' not in config:
        return config
    package, rel = config.split('::', 1)
    spec = importlib.util.find_spec(package) if package.isidentifier() \
        else None  # a top-level find_spec imports nothing
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f'config {config!r}: package {package!r} is not '
                         'installed')
    root = list(spec.submodule_search_locations)[0]
    path = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise InputError(f'config not found: {config!r} (looked for {path})')
    return path


def _load_config(config: Union[str, Path, mmengine.Config]) -> mmengine.Config:
    if isinstance(config, mmengine.Config):
        return copy.deepcopy(config)
    if not isinstance(config, (str, Path)):
        raise TypeError('config must be a filename or mmengine.Config, '
                        f'not {type(config).__name__}')
    path = resolve_config_path(config)
    if not osp.isfile(path):
        raise InputError(f'config file not found: {os.fspath(config)!r}')
    try:
        return mmengine.Config.fromfile(path)
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f'cannot read config {os.fspath(config)!r}: '
                         f'{str(e).strip().splitlines()[0]}') from None


def check_device(device: Union[str, torch.device]) -> torch.device:
    """``device`` as a ``torch.device`` that exists here.

    Raises:
        InputError: not a device name, or CUDA (that index) not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"device {device!r} is not a device name; use "
                         "'cpu', 'cuda' or 'cuda:<index>'") from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise InputError(f'device {str(device)!r}: CUDA is not available '
                             'here; use --device cpu (API: device="cpu")')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f'device {str(device)!r}: this machine has '
                             f'{torch.cuda.device_count()} CUDA device(s)')
    elif dev.type not in ('cpu', 'mps', 'xpu'):
        raise InputError(f"device {str(device)!r} is not supported; use "
                         "'cpu' or 'cuda[:<index>]'")
    return dev


def init_recognizer(config: Union[str, Path, mmengine.Config],
                    checkpoint: Optional[str] = None,
                    device: Union[str, torch.device] = 'cpu',
                    trust_checkpoint: bool = False,
                    cfg_options: Optional[dict] = None,
                    allow_partial_checkpoint: bool = False) -> nn.Module:
    """Build a recognizer like ``mmaction.apis.init_recognizer``, safely.

    Args:
        config: config path, ``'mmaction::recognition/...'`` name, or a
            ``mmengine.Config`` (copied, not modified).
        checkpoint: path or http(s) URL of weights; ``None`` keeps the
            random initialisation.
        device: where to put the model.
        trust_checkpoint: allow a checkpoint that needs types outside the
            safe allowlist (runs code from the file: trusted sources only).
        cfg_options: overrides merged into the config (dotted keys).
        allow_partial_checkpoint: load a checkpoint that does not fit the
            model (missing keys, other shapes) anyway, with a warning kept
            in ``model.mmxai_checkpoint_warning``; refused otherwise.

    Returns:
        The model in eval mode on ``device``, with ``model.cfg`` set (and
        ``model.dataset_meta`` when the checkpoint carries it).
    """
    device = check_device(device)
    config = _load_config(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    if not isinstance(config.get('model'), dict):
        raise ConfigError('config has no `model` section')
    init_default_scope(config.get('default_scope', 'mmaction'))
    strip_pretrained(config.model)

    from mmaction.registry import MODELS  # after `import mmxai`'s shims
    model = MODELS.build(config.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu',
                        trust_checkpoint=trust_checkpoint,
                        allow_partial=allow_partial_checkpoint)
    model.cfg = config
    model.to(device)
    model.eval()
    return model
