# Stage one of the two-stage phase recognizers (TeCNO, Czempiel et al. 2020):
# a per-frame ResNet-50 (the toolbox's ResNet + TSNHead on one frame per
# window) trained on Cholec80 frames at 1 fps, labelled with their phase.
# ImageNet weights: set model.backbone.pretrained='torchvision://resnet50'
# where they can be downloaded (none can be on the machines mmxai is built on).
_base_ = ['./_base_/cholec80.py']

model = dict(
    type='Recognizer2D',
    backbone=dict(type='ResNet', depth=50, pretrained=None,
                  torchvision_pretrain=False, norm_eval=False),
    cls_head=dict(type='TSNHead', num_classes=7, in_channels=2048,
                  spatial_type='avg',
                  consensus=dict(type='AvgConsensus', dim=1),
                  dropout_ratio=0.5, init_std=0.01, average_clips='prob'),
    data_preprocessor=dict(type='ActionDataPreprocessor',
                           mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], format_shape='NCHW'))
work_dir = 'work_dirs/surgical/resnet50_frames_cholec80'
