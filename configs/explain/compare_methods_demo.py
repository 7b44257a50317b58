# The method comparison of compare_methods_hook.py on the bundled demo model
# and its synthetic test set (python tools/make_demo.py writes
# data/synthetic; the checkpoint is demo/i3d_tiny_synthetic.pth):
#   python $(python -c "import mmaction,os;print(os.path.dirname(
#       mmaction.__file__))")/.mim/tools/test.py \
#       configs/explain/compare_methods_demo.py demo/i3d_tiny_synthetic.pth \
#       [--cfg-options custom_hooks.0.max_samples=40]   # the first 40 clips
_base_ = ['../demo/i3d_tiny_synthetic.py', './compare_methods_hook.py']
work_dir = 'work_dirs/compare_methods_demo'
