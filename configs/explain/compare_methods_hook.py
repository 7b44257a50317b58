# Several explanation methods compared over the test set, with the
# registered metrics (one implementation), beside any config:
#   _base_ = ['my_config.py', 'path/to/configs/explain/compare_methods_hook.py']
# then MMAction2's tools/test.py as usual. Writes
#   <work_dir>/compare.json, compare.md   methods ranked by each metric, with
#                                         means and 95 % t-intervals, a seeded
#                                         random map scored beside them, time
#                                         and peak memory per sample, the
#                                         agreement between methods and the
#                                         recommendation derived from these
#   <work_dir>/agreement.png              method x method Spearman heat map
#   <work_dir>/explanations/<method>/<index>/explanation.json, maps.npz
# and logs mmxai/<method>/<key> (+ _ci95) beside the config's own metrics.
# A method that does not apply to the model is listed with its reason; one
# that fails on a sample is recorded and the run goes on.
custom_hooks = [
    dict(type='mmxai.ExplainHook',
         explainer=[
             dict(type='GradCAM'),
             dict(type='Saliency'),
             dict(type='RISE', num_masks=64, cells=(4, 4, 4), batch_size=16),
         ],
         interval=1, max_samples=None,
         outputs=('json', 'npz'),  # + 'video', 'montage' ... per method
         metrics=[
             dict(type='mmxai.DeletionInsertionAUC',
                  modes=('deletion', 'insertion'), steps=16, unit='cell',
                  cell_size=(1, 8, 8), baseline='fade', batch_size=17),
             dict(type='mmxai.AverageDrop', blur_sigma=10.0),
         ])
]
