# Pure video transformer of mmxai's localisation benchmark: MMAction2's
# VideoMAE `VisionTransformer` layout (embed 96, depth 4, 4 heads, joint
# global attention over 8x4x4 = 128 tokens, sinusoidal positions, mean
# pooling, TimeSformerHead) whose linear 2x16x16 tubelet embedding is a
# 3-layer Conv3d stem with the same output grid (mmxai's
# `ConvStemVisionTransformer`, mmxai/models/conv_stem_vit.py):
# Conv3d(3,16,3x5x5,s1x2x2)-ReLU-Conv3d(16,32,3x3x3,s2x2x2)-ReLU-
# Conv3d(32,96,1x4x4,s1x4x4). Distilled from the benchmark I3D by
# tools/benchmarks/train_benchmark_transformer.py --stem conv (the command
# in docs/transformer_cams.md). The linear-patch ViT of the same size did not
# learn this motion task on 2 CPU cores; the stem makes it learnable.
# Grad-CAM's layer is the adapter's default, the last block (8x4x4 tokens,
# the grid of the other benchmark models' CAMs).
# Checkpoint: checkpoints/benchmark/vit_conv_synthetic.pth
_base_ = ['./_base_/synthetic_16x64.py']

# The benchmark suite's display name (tools/benchmarks/suite/settings.py).
benchmark_title = 'ViT (conv stem, VideoMAE layout)'

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='ConvStemVisionTransformer',
        stem_channels=(16, 32),
        img_size=64,
        patch_size=16,
        embed_dims=96,
        depth=4,
        num_heads=4,
        mlp_ratio=4,
        qkv_bias=True,
        num_frames=16,
        tubelet_size=2,
        norm_cfg=dict(type='LN', eps=1e-6),
        drop_path_rate=0.0,
        use_learnable_pos_emb=False,
        use_mean_pooling=True),
    cls_head=dict(
        type='TimeSformerHead',
        num_classes=4,
        in_channels=96,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[58.0, 58.0, 58.0],
        format_shape='NCTHW'))

work_dir = 'work_dirs/benchmark/vit_conv_synthetic'
