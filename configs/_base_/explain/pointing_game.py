# Pointing game and temporal grounding against ground-truth masks/frames:
#   _base_ = ['my_config.py', 'path/to/_base_/explain/pointing_game.py']
# The test pipeline's PackActionInputs must keep the ground truth keys, e.g.
#   dict(type='PackActionInputs', meta_keys=('img_shape', 'img_key',
#        'video_id', 'timestamp', 'sample_idx', 'frame_inds',
#        'crop_quadruple', 'gt_mask_path'))
# (mmxai.SyntheticVideoDataset provides gt_mask_path).
custom_hooks = [
    dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
         outputs=(),
         metrics=[
             dict(type='mmxai.PointingGame', tolerance=15, tolerance_ref=224,
                  mode='frame', temporal=True),
         ])
]
