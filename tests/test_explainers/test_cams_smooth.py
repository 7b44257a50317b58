"""Smooth Grad-CAM++ against torch-cam's ``SmoothGradCAMpp`` on the tiny
I3D: one noisy sample from the same seed (torch-cam draws from the global
RNG after ``torch.manual_seed``), torch-cam's channel weights combined
with the clean activations (torch-cam combines them with the last noisy
copy's), denominator ``'sum_ag3'`` (torch-cam's); classifier scaled by
1e3 so that torch-cam's ``eps=1e-8`` is negligible. Tolerance
``max|a - b| <= 1e-4 max|b|``.
"""
import copy

import torch
import torch.nn.functional as F

from mmxai.explainers import SmoothGradCAMPlusPlus, build_explainer
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import ScoreModule, close, torchcam
from tiny_models import build, clip_batch, i3d_cfg, preprocess

LAYER = 'backbone.layer3'


def test_equals_torchcam_one_sample():
    model = build(i3d_cfg())
    with torch.no_grad():
        model.cls_head.fc_cls.weight.mul_(1e3)
    x = preprocess(model, clip_batch(batch=2, frames=4, size=16))['inputs']
    targets = torch.tensor([1, 3])
    module = ScoreModule(model).eval()
    with torchcam.SmoothGradCAMpp(module, ['net.' + LAYER], num_samples=1,
                                  std=0.5, input_shape=x.shape[2:]) as cam:
        module(x[:, 0])
        clean = cam.hook_a[0].clone()
        torch.manual_seed(7)
        w = cam._get_weights([1, 3])[0]
    ref = F.relu((w.view(*w.shape, 1, 1, 1) * clean).sum(1))
    ex = SmoothGradCAMPlusPlus(model, [LAYER], num_samples=1, std=0.5,
                               seed=7, denominator='sum_ag3')
    snap = ModelSnapshot(model)
    exp = ex.attribute(x, targets)
    assert not snap.changes()
    from mmxai.adapters.base import upsample_maps
    close(exp.layer_maps[LAYER],
          upsample_maps(ref.unsqueeze(1), x.shape[-3:]))
    # more samples, two views chunked == one pass; registered name
    two = preprocess(model, clip_batch(views=2, frames=4, size=16))['inputs']
    kw = dict(num_samples=2, std=0.3)
    one = SmoothGradCAMPlusPlus(model, [LAYER], max_views_per_pass=None,
                                **kw).attribute(two, 2)
    chunked = SmoothGradCAMPlusPlus(model, [LAYER], max_views_per_pass=1,
                                    **kw).attribute(two, 2)
    close(chunked.raw_maps, one.raw_maps, 1e-5)
    assert build_explainer('smooth_gradcam++', copy.deepcopy(model)).name \
        == 'smooth_gradcam++'
