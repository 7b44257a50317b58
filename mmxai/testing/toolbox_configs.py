"""The recognition configs shipped inside the installed MMAction2, built small.

``list_recognition_configs()`` walks ``mmaction/.mim/configs/recognition``;
``load_recognition_config(path)`` loads one with every pretrained weight
reference cleared (nothing is downloaded); ``build_small(path)`` builds the
config's real model class with random weights at a reduced width/depth and
returns it with a matching preprocessed input (e.g. ``[1, 1, 3, 8, 64, 64]``
for 3D recognizers, ``[1, 8, 3, 64, 64]`` for 2D ones).
"""
import copy
import glob
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError, UnsupportedModelError
from ..utils.config import strip_pretrained

#: One representative config per family (directory), used by the fast
#: coverage run and ``docs/coverage.md``.
REPRESENTATIVES = {
    'c2d': 'c2d_r50-in1k-pre_8xb32-8x8x1-100e_kinetics400-rgb.py',
    'c3d': 'c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb.py',
    'csn': 'ircsn_ig65m-pretrained-r50-bnfrozen_8xb12-32x2x1-58e_kinetics400-rgb.py',
    'i3d': 'i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py',
    'mvit': 'mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb.py',
    'omnisource': 'slowonly_r50_8xb16-8x8x1-256e_imagenet-kinetics400-rgb.py',
    'r2plus1d': 'r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb.py',
    'slowfast': 'slowfast_r50_8xb8-8x8x1-256e_kinetics400-rgb.py',
    'slowonly': 'slowonly_r50_8xb16-8x8x1-256e_kinetics400-rgb.py',
    'swin': 'swin-tiny-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py',
    'tanet': 'tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb.py',
    'timesformer': 'timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb.py',
    'tin': 'tin_imagenet-pretrained-r50_8xb6-1x1x8-40e_sthv1-rgb.py',
    'tpn': 'tpn-slowonly_r50_8xb8-8x8x1-150e_kinetics400-rgb.py',
    'trn': 'trn_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv1-rgb.py',
    'tsm': 'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py',
    'tsn': 'tsn_imagenet-pretrained-r50_8xb32-1x1x8-100e_kinetics400-rgb.py',
    'uniformer': 'uniformer-small_imagenet1k-pre_16x4x1_kinetics400-rgb.py',
    'uniformerv2': 'uniformerv2-base-p16-res224_clip_8xb32-u8_kinetics400-rgb.py',
    'videomae': 'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py',
    'videomaev2': 'vit-small-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py',
    'x3d': 'x3d_s_13x6x1_facebook-kinetics400-rgb.py',
}

#: Backbone type prefixes from other OpenMMLab/third-party codebases.
_EXTERNAL = {'torchvision.': 'torchvision', 'mmpretrain.': 'mmpretrain',
             'mmcls.': 'mmcls (mmpretrain)', 'timm.': 'timm'}


def configs_root() -> str:
    """``.../site-packages/mmaction/.mim/configs/recognition``."""
    import mmaction
    root = os.path.join(os.path.dirname(mmaction.__file__), '.mim',
                        'configs', 'recognition')
    if not os.path.isdir(root):
        raise ConfigError(f'no recognition configs found at {root}')
    return root


def list_recognition_configs(include_flow: bool = False) -> List[str]:
    """Every recognition config of the installed MMAction2, as paths
    relative to :func:`configs_root` (``'tsn/tsn_...py'``), sorted.
    Optical-flow configs (two-channel input) are left out unless asked."""
    root = configs_root()
    out = []
    for path in sorted(glob.glob(os.path.join(root, '**', '*.py'),
                                 recursive=True)):
        rel = os.path.relpath(path, root)
        if '_base_' in rel.split(os.sep):
            continue
        if not include_flow and rel.endswith('-flow.py'):
            continue
        out.append(rel.replace(os.sep, '/'))
    return out


def config_family(path: str) -> str:
    """Family name of a config: its directory under ``recognition/``."""
    rel = os.path.relpath(path, configs_root()) if os.path.isabs(path) \
        else path
    return rel.replace(os.sep, '/').split('/')[0]


def representative_configs() -> Dict[str, str]:
    """Family -> one config (relative path) for each family present."""
    configs = list_recognition_configs()
    out = {}
    for rel in configs:
        fam = config_family(rel)
        if rel.split('/')[-1] == REPRESENTATIVES.get(fam) or fam not in out:
            out[fam] = rel
    return dict(sorted(out.items()))


def load_recognition_config(path: str):
    """Load a recognition config (relative to :func:`configs_root` or
    absolute) with pretrained references cleared. Returns an mmengine
    ``Config``."""
    import mmxai  # noqa: F401  (compat shims)
    from mmengine import Config
    full = path if os.path.isabs(path) else os.path.join(configs_root(), path)
    if not os.path.isfile(full):
        raise ConfigError(f'no such recognition config: {path}')
    cfg = Config.fromfile(full)
    strip_pretrained(cfg.model)
    return cfg


@dataclass
class SmallModel:
    """A config's model built small, with an input that fits it.

    Attributes:
        config: relative config path. family: its family.
        model: the recognizer (eval mode, random seeded weights).
        inputs: preprocessed input (``[B, V, C, T, H, W]`` or
            ``[B, V*T, C, H, W]``). changes: what was reduced.
    """
    config: str
    family: str
    model: nn.Module
    inputs: Tensor
    changes: Dict[str, Any]


def check_buildable(model_cfg: dict) -> None:
    """Raise :class:`UnsupportedModelError` for configs that this
    environment cannot build (compiled mmcv ops, other codebases)."""
    backbone = model_cfg.get('backbone', {}) or {}
    kind = str(backbone.get('type', ''))
    if kind == 'ResNetTIN':
        try:
            from mmcv.ops import tin_shift  # noqa: F401
        except Exception:
            raise UnsupportedModelError(
                'TIN needs full mmcv with compiled ops (mmcv.ops.tin_shift); '
                'mmcv-lite is installed') from None
    for prefix, pkg in _EXTERNAL.items():
        if kind.startswith(prefix):
            raise UnsupportedModelError(
                f'backbone {kind} comes from {pkg}, which is not usable '
                'next to this torch (not installed or broken)')
    if kind == 'MobileOneTSM':
        try:
            import mmpretrain  # noqa: F401
        except Exception:
            raise UnsupportedModelError(
                'MobileOneTSM needs mmpretrain, which is not installed') \
                from None


def _shrink(model: dict, size: int) -> Tuple[dict, Dict[str, Any], dict]:
    """Reduce a model config; return it, the changes, and input settings
    (``frames``, ``size``, ``two_d``)."""
    bb = model.backbone
    kind = str(bb.get('type', ''))
    head = model.get('cls_head', {}) or {}
    changes: Dict[str, Any] = {}
    frames = 8

    def set_(d, key, value, label=None):
        if d.get(key) != value:
            changes[label or key] = value
        d[key] = value

    has_neck = bool(model.get('neck'))
    if kind in ('ResNet3d', 'ResNet3dSlowOnly', 'ResNet3dCSN',
                'ResNet2Plus1d') and not has_neck:
        if bb.get('depth', 50) > 50:
            set_(bb, 'depth', 50)
        set_(bb, 'base_channels', 8)
    if kind in ('ResNet', 'ResNetTSM', 'C2D', 'TANet', 'ResNetTIN') and \
            not has_neck:
        # non-local blocks wrap bottlenecks (conv3): keep depth 50 there
        bottleneck = kind == 'TANet' or bb.get('non_local_cfg')
        set_(bb, 'depth', 50 if bottleneck else 18)
    if kind == 'ResNet3dSlowFast':
        for path, base in (('slow_pathway', 16), ('fast_pathway', 2)):
            if bb.get(path, {}).get('depth', 50) > 50:
                set_(bb[path], 'depth', 50, f'{path}.depth')
            set_(bb[path], 'base_channels', base, f'{path}.base_channels')
        frames = max(8, int(bb.get('resample_rate', 8)))
    if kind == 'OmniResNet':
        set_(bb, 'layers', [1, 1, 1, 1])
    if kind == 'X3D':
        set_(bb, 'gamma_d', 1.0)
    if kind == 'C3D':
        frames, size = 16, 112  # fc6 expects 512 x 1 x 4 x 4 = 8192
    if kind == 'TimeSformer':
        for k, v in dict(num_frames=4, img_size=size, patch_size=16,
                         embed_dims=64, num_heads=4,
                         num_transformer_layers=2).items():
            set_(bb, k, v)
        frames = 4
    if kind == 'VisionTransformer':  # VideoMAE / VideoMAE V2
        for k, v in dict(num_frames=4, img_size=size, patch_size=16,
                         embed_dims=64, num_heads=4, depth=2).items():
            set_(bb, k, v)
        frames = 4
    if kind == 'SwinTransformer3D':
        set_(bb, 'arch', dict(embed_dims=16, depths=[1, 1, 2, 1],
                              num_heads=[1, 2, 2, 4]))
    if kind == 'MViT':
        set_(bb, 'arch', dict(embed_dims=16, num_layers=4, num_heads=1,
                              downscale_indices=[1, 2, 3]))
        set_(bb, 'spatial_size', size)
        set_(bb, 'temporal_size', frames)
    if kind == 'UniFormer':
        set_(bb, 'depth', [1, 1, 2, 1])
        set_(bb, 'embed_dim', [16, 32, 64, 64])
        set_(bb, 'head_dim', 16)
    if kind == 'UniFormerV2':
        for k, v in dict(input_resolution=size, patch_size=16, width=64,
                         layers=2, heads=4, t_size=4, return_list=[0, 1],
                         n_layers=2, n_dim=64, n_head=4,
                         mlp_dropout=[0.5, 0.5]).items():
            set_(bb, k, v)
        frames = 4
    two_d = model.type == 'Recognizer2D' or \
        model.get('data_preprocessor', {}).get('format_shape') == 'NCHW'
    if two_d:
        segs = bb.get('num_segments') or head.get('num_segments') or 8
        frames = int(segs)
    return model, changes, dict(frames=frames, size=size, two_d=two_d)


def build_small(config: str, num_classes: int = 5, size: int = 64,
                seed: int = 0, batch: int = 1) -> SmallModel:
    """Build ``config``'s real model class small, with random weights.

    Deep ResNets become depth 50, transformers get a few narrow layers and
    ``size``-pixel inputs (C3D keeps its fixed 16 x 112 x 112); the head's
    input width follows the backbone. Returns :class:`SmallModel` with a
    preprocessed random input of ``batch`` samples and one view.

    Raises:
        UnsupportedModelError: the model needs something not installed
            (compiled mmcv ops for TIN, mmpretrain, torchvision, timm).
    """
    import mmxai  # noqa: F401
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with DefaultScope.overwrite_default_scope('mmaction'):
            return _build_small(config, num_classes, size, seed, batch)
    finally:
        logger.setLevel(level)


def _build_small(config: str, num_classes: int, size: int, seed: int,
                 batch: int) -> SmallModel:
    from mmaction.registry import MODELS
    cfg = load_recognition_config(config)
    model_cfg = copy.deepcopy(cfg.model)
    check_buildable(model_cfg)
    model_cfg, changes, spec = _shrink(model_cfg, size)
    head = model_cfg.get('cls_head')
    if head is not None and head.get('type') == 'OmniHead':
        head['image_classes'] = head['video_classes'] = num_classes
    elif head is not None:
        head['num_classes'] = num_classes
        if 'dropout_ratio' in head:
            head['dropout_ratio'] = 0.0
    pre = model_cfg.get('data_preprocessor', {})
    pre.pop('blending', None)
    frames, size = spec['frames'], spec['size']
    g = torch.Generator().manual_seed(seed)
    if spec['two_d']:
        inputs = torch.randn(batch, frames, 3, size, size, generator=g)
    else:
        inputs = torch.randn(batch, 1, 3, frames, size, size, generator=g)
    torch.manual_seed(seed)
    if head is not None and 'in_channels' in head and \
            not model_cfg.get('neck'):
        backbone = MODELS.build(copy.deepcopy(model_cfg.backbone))
        backbone.eval()
        with torch.no_grad():
            feat = backbone(inputs.flatten(0, 1) if not spec['two_d']
                            else inputs.flatten(0, 1))
        head['in_channels'] = _channels(feat)
        changes['cls_head.in_channels'] = head['in_channels']
    model = MODELS.build(model_cfg)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and \
                m.running_mean is not None:
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    for name, p in model.named_parameters():  # zero-initialised branches
        if p.dim() >= 2 and not p.detach().any():  # (e.g. temporal_fc,
            with torch.no_grad():                   # decoder projections)
                p.normal_(0, 0.02, generator=g)
    fc = getattr(model.cls_head, 'fc_cls', None)
    if isinstance(fc, nn.Linear):
        nn.init.normal_(fc.weight, std=0.1, generator=g)
        if fc.bias is not None:
            nn.init.normal_(fc.bias, std=0.1, generator=g)
    model.eval()
    rel = config if not os.path.isabs(config) else os.path.relpath(
        config, configs_root())
    return SmallModel(config=rel, family=config_family(rel),
                      model=model, inputs=inputs, changes=changes)


def _channels(feat) -> int:
    """Channel count of a backbone output (tensor, tuple or MViT lists)."""
    if isinstance(feat, Tensor):
        return int(feat.shape[1])
    if isinstance(feat, (tuple, list)) and all(
            isinstance(f, Tensor) for f in feat):  # SlowFast pathways
        return int(sum(f.shape[1] for f in feat))
    if isinstance(feat, (tuple, list)):
        last = feat[-1]
        if isinstance(last, (tuple, list)):  # MViT: [patch, cls]
            return int(last[0].shape[1])
        return int(last.shape[1])
    raise ConfigError(f'cannot read channels from {type(feat).__name__}')


__all__ = ['REPRESENTATIVES', 'SmallModel', 'build_small', 'check_buildable',
           'config_family', 'configs_root', 'list_recognition_configs',
           'load_recognition_config', 'representative_configs',
           'strip_pretrained']
