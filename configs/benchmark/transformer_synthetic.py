# Video transformer of mmxai's localisation benchmark: a tiny UniFormer
# (Li et al. 2022; MMAction2's `UniFormer`) trained from scratch on 16x64x64
# clips: 3x4x4 tubelet embedding (stride 2x4x4), two convolutional stages
# (local relation aggregators, 32 and 64 dims) then two self-attention
# stages (global attention over 8x4x4 = 128 tokens in stage 3, 128 dims;
# 8x2x2 tokens in stage 4, 256 dims); I3DHead on the pooled output.
# Pure ViTs of the same size (VideoMAE-style joint attention, 16x16 patches)
# and a tiny Video Swin did not learn this motion task from scratch within
# 6-10 epochs (chance accuracy); the convolutional stages make it learnable.
# Grad-CAM's benchmark layer is the last attention block of stage 3
# (`backbone.blocks3.1`, 8x4x4 tokens: the same grid as the other models).
# Checkpoint: checkpoints/benchmark/transformer_synthetic.pth
_base_ = ['./_base_/synthetic_16x64.py']

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='UniFormer',
        depth=[1, 1, 2, 1],
        img_size=64,
        embed_dim=[32, 64, 128, 256],
        head_dim=16,
        mlp_ratio=4,
        drop_path_rate=0.1,
        pretrained2d=False,
        pretrained=None),
    cls_head=dict(
        type='I3DHead',
        num_classes=4,
        in_channels=256,
        spatial_type='avg',
        dropout_ratio=0.2,
        init_std=0.02,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[58.0, 58.0, 58.0],
        format_shape='NCTHW'))

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5, norm_type=2))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5,
         by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True)
]

work_dir = 'work_dirs/benchmark/transformer_synthetic'
