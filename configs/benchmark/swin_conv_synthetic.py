# Video transformer of mmxai's localisation benchmark: MMAction2's Video Swin
# (`SwinTransformer3D`) with a convolutional stem in place of the linear patch
# projection (`ConvStemSwinTransformer3D`, mmxai/models/conv_stem_swin.py):
# Conv3d(3,16,3x5x5,s1x2x2)-ReLU-Conv3d(16,32,3x3x3,s2x2x2)-ReLU-
# Conv3d(32,64,1x2x2,s1x2x2) gives 8x8x8 tokens (64 dims) from the 16x64x64
# clip; stage 1: 2 blocks, 4 heads, windows 4x4x4 (shift 2x2x2 in the second);
# patch merging to 8x4x4 (128 dims); stage 2: 2 blocks, 8 heads, windows
# 4x4x4 = the two temporal halves of that grid (the second block shifted by
# 2 frames; no spatial shift, the window covers the grid); I3DHead on the
# pooled output. Blocks, windows, shifts and merges are MMAction2's, so
# mmxai's Swin attention rollout / relevance apply. Distilled from the
# benchmark's I3D (soft targets + its layer2/layer4 feature grids), trained
# and tested by
# tools/benchmarks/train_benchmark_transformer.py (command in
# docs/transformer_cams.md, "A benchmark Video Swin").
# Checkpoint: checkpoints/benchmark/swin_conv_synthetic.pth
_base_ = ['./_base_/synthetic_16x64.py']

benchmark_title = 'Video Swin (conv stem, distilled)'

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='ConvStemSwinTransformer3D',
        arch=dict(embed_dims=64, depths=[2, 2], num_heads=[4, 8]),
        pretrained=None,
        pretrained2d=False,
        patch_size=(2, 8, 8),
        window_size=(4, 4, 4),
        stem_channels=(16, 32),
        drop_path_rate=0.0,
        out_indices=(1, )),
    cls_head=dict(
        type='I3DHead',
        num_classes=4,
        in_channels=128,
        spatial_type='avg',
        dropout_ratio=0.0,
        init_std=0.02,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[58.0, 58.0, 58.0],
        format_shape='NCTHW'))

work_dir = 'work_dirs/benchmark/swin_conv_synthetic'
