# Saliency Tubes (CAM on the head's input features) for the test set.
custom_imports = dict(imports=['mmxai'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='mmxai.ExplainHook',
        explainer=dict(type='SaliencyTubes'),
        target='pred',
        interval=1,
        outputs=('json', 'npz', 'video'),
        out_dir='explanations/saliency_tubes')
]
