# Shared data/schedule of mmxai's localisation benchmark models: the
# synthetic action dataset (mmxai/datasets/synthetic_benchmark.py, 'medium'
# difficulty), 16-frame 64x64 clips read whole (no temporal or spatial
# resampling, so the ground-truth masks map one to one onto the input).
# Data: tools/benchmarks/train_benchmark_models.py writes data/benchmark_synthetic.
_base_ = ['../../_base_/synthetic_runtime.py']

num_classes = 4
dataset_type = 'mmxai.SyntheticVideoDataset'
data_root = 'data/benchmark_synthetic'
file_client_args = dict(io_backend='disk')
input_format = 'NCTHW'
# meta keys the localisation metrics need to map ground truth onto the input
gt_meta_keys = ('img_shape', 'img_key', 'video_id', 'timestamp', 'sample_idx',
                'frame_inds', 'crop_quadruple', 'gt_mask_path')

# No flips: they would swap the left/right classes.
train_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=16, frame_interval=1, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='RandomCrop', size=64),
    dict(type='FormatShape', input_format=input_format),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=16, frame_interval=1, num_clips=1,
         test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='CenterCrop', crop_size=64),
    dict(type='FormatShape', input_format=input_format),
    dict(type='PackActionInputs', meta_keys=gt_meta_keys)
]
val_pipeline = test_pipeline

train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        ann_file=f'{data_root}/train.txt',
        data_prefix=dict(video=data_root),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=f'{data_root}/val.txt',
        data_prefix=dict(video=data_root),
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=f'{data_root}/test.txt',
        data_prefix=dict(video=data_root),
        pipeline=test_pipeline,
        test_mode=True))

max_epochs = 10
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_begin=1,
    val_interval=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5,
         by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True)
]
