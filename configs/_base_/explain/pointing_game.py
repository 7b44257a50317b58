# Pointing game and temporal grounding against ground-truth masks/frames.
# The test pipeline's PackActionInputs must keep the ground truth keys, e.g.
#   dict(type='PackActionInputs', meta_keys=('img_shape', 'img_key',
#        'video_id', 'timestamp', 'sample_idx', 'frame_inds',
#        'crop_quadruple', 'gt_mask_path'))
# (mmxai.SyntheticVideoDataset provides gt_mask_path).
custom_imports = dict(imports=['mmxai'], allow_failed_imports=False)
custom_hooks = [
    dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
         outputs=())
]
test_evaluator = [
    dict(type='AccMetric'),
    dict(type='mmxai.PointingGame', tolerance=15, tolerance_ref=224,
         mode='frame', temporal=True),
]
