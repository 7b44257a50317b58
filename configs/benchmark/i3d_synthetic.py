# 3D CNN of mmxai's localisation benchmark: a tiny I3D (ResNet3d-18, 8 base
# channels) on 16x64x64 synthetic clips. Its last stage keeps a 4x4 spatial
# grid (spatial stride 1 in stage 4) and 8 time steps, so class activation
# maps have usable resolution. Checkpoint: checkpoints/benchmark/i3d_synthetic.pth
_base_ = ['./_base_/synthetic_16x64.py']

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='ResNet3d',
        depth=18,
        base_channels=8,
        pretrained=None,
        pretrained2d=False,
        spatial_strides=(1, 2, 2, 1),
        conv1_kernel=(3, 7, 7),
        conv1_stride_t=1,
        pool1_stride_t=1,
        inflate=(1, 1, 1, 1),
        zero_init_residual=False),
    cls_head=dict(
        type='I3DHead',
        num_classes=4,
        in_channels=64,
        spatial_type='avg',
        dropout_ratio=0.2,
        init_std=0.01,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[58.0, 58.0, 58.0],
        format_shape='NCTHW'))

work_dir = 'work_dirs/benchmark/i3d_synthetic'
