# Model parameter randomisation test (Adebayo et al. 2018) of Grad-CAM on the
# config's own test clips, beside its own metrics:
#   _base_ = ['my_config.py', 'path/to/_base_/explain/sanity_check.py']
# The explainer is rebuilt on a copy of the model whose layers are
# re-initialised top-down (cls_head, neck, backbone stages); maps that depend
# on the learnt weights decorrelate. The hook adds the metric to the test
# evaluator for the run.
custom_hooks = [
    dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'),
         interval=1, max_samples=8, outputs=(),  # maps for the metric only
         metrics=[
             dict(type='mmxai.ModelRandomization',
                  cascade=None,     # default: cls_head, neck, backbone top-down
                  threshold=0.5,    # passes below this mean Spearman correlation
                  max_samples=8,    # cost: len(cascade) explanations per batch
                  keep_steps=True),
         ])
]
