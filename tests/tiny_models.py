"""Tiny real MMAction2 recognizers for fast tests (built via the registry).

Clips are 8 frames of 32 x 32 unless said otherwise. All weights random but
seeded; nothing is downloaded.
"""
import copy
from typing import Optional

import torch

import mmxai  # noqa: F401  (compat shims before mmaction.models)
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmaction.utils import register_all_modules

from mmxai.testing.clips import write_toy_clip

register_all_modules(init_default_scope=True)

PREPROCESSOR_3D = dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53],
                       std=[58.395, 57.12, 57.375], format_shape='NCTHW')
PREPROCESSOR_2D = dict(PREPROCESSOR_3D, format_shape='NCHW')


def i3d_cfg(num_classes: int = 5, base_channels: int = 4) -> dict:
    return dict(
        type='Recognizer3D',
        backbone=dict(type='ResNet3d', depth=18, base_channels=base_channels,
                      pretrained=None, pretrained2d=False,
                      conv1_kernel=(3, 7, 7), conv1_stride_t=1,
                      pool1_stride_t=1, inflate=(1, 1, 1, 1),
                      spatial_strides=(1, 2, 1, 1),
                      temporal_strides=(1, 1, 2, 1)),
        cls_head=dict(type='I3DHead', num_classes=num_classes,
                      in_channels=base_channels * 8, spatial_type='avg',
                      dropout_ratio=0.5, average_clips='prob'),
        data_preprocessor=PREPROCESSOR_3D)


def tsn_cfg(num_classes: int = 5) -> dict:
    return dict(
        type='Recognizer2D',
        backbone=dict(type='ResNet', depth=18, pretrained=None,
                      torchvision_pretrain=False, norm_eval=False),
        cls_head=dict(type='TSNHead', num_classes=num_classes,
                      in_channels=512, spatial_type='avg', consensus=dict(
                          type='AvgConsensus', dim=1),
                      dropout_ratio=0.4, average_clips='prob'),
        data_preprocessor=PREPROCESSOR_2D)


def tsm_cfg(num_classes: int = 5, num_segments: int = 8) -> dict:
    return dict(
        type='Recognizer2D',
        backbone=dict(type='ResNetTSM', depth=18, pretrained=None,
                      num_segments=num_segments, shift_div=8,
                      norm_eval=False),
        cls_head=dict(type='TSMHead', num_classes=num_classes,
                      in_channels=512, num_segments=num_segments,
                      spatial_type='avg', consensus=dict(
                          type='AvgConsensus', dim=1),
                      dropout_ratio=0.5, is_shift=True, average_clips='prob'),
        data_preprocessor=PREPROCESSOR_2D)


def build(cfg: dict, seed: int = 0) -> torch.nn.Module:
    """Build a recognizer from ``cfg`` with seeded random weights, eval mode."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    # Non-trivial BN statistics and head bias so tests see real arithmetic.
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    head = model.cls_head
    if getattr(head, 'fc_cls', None) is not None:
        torch.nn.init.normal_(head.fc_cls.weight, std=0.1, generator=g)
        torch.nn.init.normal_(head.fc_cls.bias, std=0.1, generator=g)
    return model.eval()


def clip_batch(batch: int = 1, views: int = 1, frames: int = 8,
               size: int = 32, two_d: bool = False, seed: int = 0,
               labels: Optional[list] = None) -> dict:
    """A raw data batch as the toolbox's dataloader yields it (uint8)."""
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch):
        x = torch.randint(0, 256, (views, 3, frames, size, size),
                          generator=g, dtype=torch.uint8)
        if two_d:  # [V*T, C, H, W], views outermost
            x = x.permute(0, 2, 1, 3, 4).reshape(views * frames, 3, size, size)
        inputs.append(x)
    samples = []
    for i in range(batch):
        ds = ActionDataSample()
        if labels is not None:
            ds.set_gt_label(labels[i])
        samples.append(ds)
    return dict(inputs=inputs, data_samples=samples)


def preprocess(model, data: dict) -> dict:
    with torch.no_grad():
        return model.data_preprocessor(copy.copy(data), False)


def write_video_file(path, frames: int = 20, height: int = 40,
                     width: int = 56, seed: int = 0, fps: int = 10) -> str:
    """A small MP4 (square moving right on noise, wrapping); its path."""
    write_toy_clip(path, frames, height, width, seed, fps, square=10,
                   start=(10, 4), jitter=0, speed=(2, 1), wrap=width - 12)
    return str(path)


TEST_PIPELINE_3D = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=8, frame_interval=2, num_clips=1,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 36)),
    dict(type='CenterCrop', crop_size=32),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]


def write_config(path, model_cfg: dict = None, test_pipeline=None) -> str:
    """A complete config file (model + test pipeline) for the CLI/APIs."""
    from mmengine.config import Config
    cfg = Config(dict(
        default_scope='mmaction',
        model=model_cfg or i3d_cfg(),
        test_pipeline=test_pipeline or TEST_PIPELINE_3D))
    cfg.dump(str(path))
    return str(path)


def write_checkpoint(path, model) -> str:
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': list('abcde')}}},
               str(path))
    return str(path)
