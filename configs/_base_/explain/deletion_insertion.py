# Faithfulness metrics of Grad-CAM maps beside the config's own metrics:
#   _base_ = ['my_config.py', 'path/to/_base_/explain/deletion_insertion.py']
# then MMAction2's tools/test.py as usual. The hook adds its metrics to the
# test evaluator for the run (nothing here clashes with test_evaluator).
custom_hooks = [
    dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
         interval=1, outputs=(),  # maps for the metrics only
         metrics=[
             dict(type='mmxai.DeletionInsertionAUC',
                  modes=('deletion', 'insertion'),
                  steps=16,               # Li et al. use 128
                  unit='cell',            # or 'supervoxel' (SLIC, n_segments)
                  cell_size=(1, 16, 16),  # (t, h, w) pixels
                  baseline='fade',        # or 'blur' (blur_sigma)
                  batch_size=16),
             dict(type='mmxai.AverageDrop', blur_sigma=10.0),
         ])
]
