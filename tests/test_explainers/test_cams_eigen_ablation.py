"""Eigen-CAM, EigenGrad-CAM, Ablation-CAM against hand-computed references
on the tiny I3D (torch-cam has none of them).

- Eigen-CAM: numpy's SVD of the centred ``[positions, channels]`` matrix of
  one view (float64), and a rank-1 identity (the map is the positions'
  factor); EigenGrad-CAM: the same of ``g * A``.
- Ablation-CAM at a GAP + linear head's input: zeroing channel ``k``
  lowers ``s_c`` by exactly ``W[c, k] mean_thw A_k``, so
  ``w_k = W[c, k] mean A_k / s_c`` in closed form.
Tolerance ``max|a - b| <= 1e-4 max|b|``.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmxai.explainers import AblationCAM, EigenCAM, EigenGradCAM
from mmxai.explainers.cam_eigen import first_component
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import close
from tiny_models import build, clip_batch, i3d_cfg, preprocess

INNER, HEAD_INPUT = 'backbone.layer3', 'backbone'
TARGETS = torch.tensor([1, 3])


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


@pytest.fixture(scope='module')
def inputs(i3d):
    return preprocess(i3d, clip_batch(batch=2, frames=4, size=16))['inputs']


def numpy_component(grid):
    """``[K, t, h, w]`` -> ``[t, h, w]`` (numpy, float64)."""
    x = grid.double().numpy().reshape(grid.shape[0], -1).T
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[0]
    if (proj * x.sum(1)).sum() < 0:
        proj = -proj
    return torch.from_numpy(proj.reshape(grid.shape[1:]))


def test_eigen_cams_by_hand(i3d, inputs):
    for cls, feats in ((EigenCAM, lambda a, g: a),
                       (EigenGradCAM, lambda a, g: a * g)):
        ex = cls(i3d, target_layers=[INNER])
        grids, _, _ = ex.layer_grids(inputs, TARGETS, None)
        a, g = grids[INNER]
        for i in range(2):
            ref = F.relu(numpy_component(feats(a, g)[i, 0]))
            close(F.relu(ex.layer_cam(a, g))[i, 0], ref)
        snap = ModelSnapshot(i3d)
        exp = ex.attribute(inputs, TARGETS)
        assert not snap.changes() and exp.raw_maps.max() > 0
    # rank 1: A_k(p) = u_k f(p) + c_k -> the map is f - mean f (up to scale)
    f = torch.rand(1, 1, 1, 3, 4, 4, dtype=torch.float64)
    u = torch.randn(1, 1, 6, 1, 1, 1, dtype=torch.float64)
    c = torch.randn(1, 1, 6, 1, 1, 1, dtype=torch.float64)
    comp = first_component(u * f + c)[0, 0]
    expect = (f - f.mean())[0, 0, 0] * u.norm()
    close(comp.abs(), expect.abs(), 1e-8)


def test_ablation_cam_closed_form(i3d, inputs):
    ex = AblationCAM(i3d, target_layers=[HEAD_INPUT], batch_size=16)
    snap = ModelSnapshot(i3d)
    exp = ex.attribute(inputs, TARGETS)
    assert not snap.changes()
    grids, scores, _ = EigenCAM(i3d, target_layers=[HEAD_INPUT]).layer_grids(
        inputs, TARGETS, None)
    a = grids[HEAD_INPUT][0]  # [B, 1, K, t, h, w]
    w_fc = i3d.cls_head.fc_cls.weight.detach()[TARGETS]  # [B, K]
    s = scores.gather(1, TARGETS.view(-1, 1))  # [B, 1]
    w = w_fc * a.flatten(3).mean(-1)[:, 0] / s
    ref = F.relu((w.view(2, 1, -1, 1, 1, 1) * a).sum(2))
    close(exp.layer_maps[HEAD_INPUT], i3d_upsample(ref, inputs), 1e-4)
    # top_k: only k channels ablated, the same weights for those
    few = AblationCAM(i3d, target_layers=[HEAD_INPUT], top_k=2).attribute(
        inputs, TARGETS)
    assert torch.isfinite(few.raw_maps).all()


def i3d_upsample(cam, inputs):
    from mmxai.adapters.base import upsample_maps
    return upsample_maps(cam, inputs.shape[-3:])
