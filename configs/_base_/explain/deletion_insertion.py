# Faithfulness metrics of Grad-CAM maps beside the accuracy.
# Replaces the config's test_evaluator (lists in configs do not merge):
# keep your own metrics by listing them here in a child config.
custom_imports = dict(imports=['mmxai'], allow_failed_imports=False)
custom_hooks = [
    dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
         interval=1, outputs=())  # maps for the metrics only
]
test_evaluator = [
    dict(type='AccMetric'),
    dict(type='mmxai.DeletionInsertionAUC',
         modes=('deletion', 'insertion'),
         steps=16,               # Li et al. use 128
         unit='cell',            # or 'supervoxel' (SLIC, n_segments)
         cell_size=(1, 16, 16),  # (t, h, w) pixels
         baseline='fade',        # or 'blur' (blur_sigma)
         batch_size=16),
    dict(type='mmxai.AverageDrop', blur_sigma=10.0),
]
