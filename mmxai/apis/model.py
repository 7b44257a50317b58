"""Build a recognizer from a config and load its weights safely."""
from pathlib import Path
from typing import Optional, Union

import mmengine
import torch
import torch.nn as nn
from mmengine.registry import init_default_scope

from mmxai.checkpoint import load_checkpoint
from mmxai.errors import ConfigError, InputError
from mmxai.preflight import load_config, resolve_config_path
from mmxai.utils.config import strip_pretrained

__all__ = ['init_recognizer', 'resolve_config_path', 'strip_pretrained',
           'check_device', 'model_and_config']


def _load_config(config: Union[str, Path, mmengine.Config],
                 cfg_options: Optional[dict] = None) -> mmengine.Config:
    """The config (a copy), with ``cfg_options`` checked and merged."""
    return load_config(config, cfg_options)


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
    config = _load_config(config, cfg_options)
    if not isinstance(config.get('model'), dict):
        raise ConfigError('config has no `model` section')
    init_default_scope(config.get('default_scope', 'mmaction'))
    strip_pretrained(config.model)

    from mmaction.registry import MODELS  # after `import mmxai`'s shims
    try:
        model = MODELS.build(config.model)
    except Exception as e:  # noqa: BLE001 - a config the toolbox refuses
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
        name = getattr(config, 'filename', None) or 'the config'
        raise ConfigError(f'cannot build the model of {name}: '
                          f'{type(e).__name__}: {text}; check the model '
                          'section and --cfg-options') from None
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu',
                        trust_checkpoint=trust_checkpoint,
                        allow_partial=allow_partial_checkpoint)
    model.cfg = config
    model.to(device)
    model.eval()
    return model


def model_and_config(model, checkpoint: Optional[str] = None,
                     device: Union[str, torch.device] = 'cpu',
                     trust_checkpoint: bool = False,
                     cfg_options: Optional[dict] = None,
                     allow_partial_checkpoint: bool = False):
    """``(model, model.cfg)``: ``model`` as given if it is a recognizer,
    else built from it (a config) by :func:`init_recognizer`.

    Raises:
        ConfigError: the model carries no ``.cfg`` (the test pipeline).
    """
    if not isinstance(model, nn.Module):
        model = init_recognizer(model, checkpoint, device=device,
                                trust_checkpoint=trust_checkpoint,
                                cfg_options=cfg_options,
                                allow_partial_checkpoint=(
                                    allow_partial_checkpoint))
    from mmxai.adapters import unwrap_model
    cfg = getattr(unwrap_model(model), 'cfg', None)
    if cfg is None:
        raise ConfigError('the model has no .cfg: build it with '
                          'mmxai.apis.init_recognizer(config, checkpoint)')
    return model, cfg
