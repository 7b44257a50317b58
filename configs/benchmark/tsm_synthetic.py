# 2D + temporal model of mmxai's localisation benchmark: TSM (temporal shift)
# on a MobileNetV2 with widen factor 0.5: 8 segments of 64x64, one frame from
# each 2-frame segment of the 16-frame clip (TSN sampling: random offsets in
# training, segment centres = frames 1, 3, ..., 15 in test). The backbone
# returns stage 5 (out_indices=(4,), stride 16: a 4x4 grid like the I3D's)
# instead of the stride-32 2x2 output, so maps have usable resolution; the
# stages after it are built by the toolbox class but unused.
# Checkpoint: checkpoints/benchmark/tsm_synthetic.pth
_base_ = ['./_base_/synthetic_16x64.py']

num_segments = 8
model = dict(
    type='Recognizer2D',
    backbone=dict(
        type='MobileNetV2TSM',
        pretrained=None,
        pretrained2d=False,
        widen_factor=0.5,
        out_indices=(4, ),
        num_segments=num_segments,
        is_shift=True,
        shift_div=8),
    cls_head=dict(
        type='TSMHead',
        num_classes=4,
        in_channels=48,  # 96 * 0.5
        num_segments=num_segments,
        spatial_type='avg',
        consensus=dict(type='AvgConsensus', dim=1),
        dropout_ratio=0.2,
        init_std=0.01,
        is_shift=True,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[58.0, 58.0, 58.0],
        format_shape='NCHW'))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='RandomCrop', size=64),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', meta_keys={{_base_.gt_meta_keys}})
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5,
         by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True)
]

work_dir = 'work_dirs/benchmark/tsm_synthetic'
