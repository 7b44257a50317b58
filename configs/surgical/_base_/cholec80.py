# Cholec80 (Twinanda et al. 2017) in its own layout, served by
# mmxai.Cholec80Dataset to MMAction2's own tools/train.py and tools/test.py:
#   data/cholec80/videos/videoNN.mp4
#   data/cholec80/phase_annotations/videoNN-phase.txt   (25 fps, Frame<TAB>Phase)
#   data/cholec80/tool_annotations/videoNN-tool.txt     (1 fps, 7 tools)
# The usual split: videos 1-40 train, 41-48 validation, 49-80 test.
# Windows are taken on a 1 fps grid and labelled with the phase at their
# last frame (online recognition, docs/surgical.md); every grid frame of a
# validation/test video gets one prediction (stride 1), so the phase
# metrics see the whole video at 1 fps.
custom_imports = dict(imports=['mmxai'], allow_failed_imports=False)
default_scope = 'mmaction'

dataset_type = 'mmxai.Cholec80Dataset'
data_root = 'data/cholec80'
data_prefix = dict(video='videos', label='phase_annotations',
                   tool='tool_annotations')
sample_fps = 1.0
clip_len = 1            # frames per window on the grid (1: a frame model)
train_stride = 1
phase_meta_keys = ('img_shape', 'video_id', 'label_frame', 'label_time',
                   'frame_inds', 'frame_labels', 'fps', 'num_frames',
                   'window_index')

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='RandomResizedCrop', area_range=(0.6, 1.0)),
    dict(type='Resize', scale=(224, 224), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', meta_keys=phase_meta_keys),
]
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 256)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs', meta_keys=phase_meta_keys),
]

_window = dict(type=dataset_type, data_root=data_root,
               data_prefix=data_prefix, sample_fps=sample_fps,
               clip_len=clip_len, label_at='last')
train_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_window, videos='1-40', stride=train_stride,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_window, videos='41-48', stride=1, pipeline=test_pipeline,
                 test_mode=True))
test_dataloader = dict(
    batch_size=32, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_window, videos='49-80', stride=1, pipeline=test_pipeline,
                 test_mode=True))

# frame accuracy, per-phase precision/recall/Jaccard (strict and relaxed:
# the Cholec80 script's 10 s boundary), edit score, F1@10/25/50
val_evaluator = [dict(type='AccMetric'),
                 dict(type='mmxai.PhaseMetric', fps=sample_fps)]
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20, val_begin=1,
                 val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4,
                                    weight_decay=1e-4),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=20, eta_min=1e-6,
                        by_epoch=True, begin=0, end=20)]

default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, ignore_last=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    sync_buffers=dict(type='SyncBuffersHook'))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ActionVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
