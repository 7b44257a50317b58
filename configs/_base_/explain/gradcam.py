# Grad-CAM explanations of the test set beside the usual metrics.
# In any MMAction2 config:  _base_ = [..., 'path/to/_base_/explain/gradcam.py']
# then run MMAction2's tools/test.py as usual; outputs go to
# <work_dir>/explanations/<sample index>/.
custom_hooks = [
    dict(
        type='mmxai.ExplainHook',
        explainer=dict(type='GradCAM'),  # target_layers default: backbone
        target='pred',          # 'pred' | 'gt' | class index
        topk=1,                 # explain the k most probable classes
        interval=1,             # every interval-th dataset index
        max_samples=None,       # cap (by index)
        indices=None,           # or exactly these dataset indices
        views='all',            # or view indices
        outputs=('json', 'npz', 'video'),  # + 'gif', 'montage', 'plot'
        out_dir='explanations',
        alpha=0.5,
        cmap='jet',
        fps=4,
        visualizer=None,        # 'runner': also send overlays to vis backends
        out_type='video')
]
