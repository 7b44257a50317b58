"""FEM against a hand computation (numpy, float64) of the k-sigma rule on
the tiny I3D's activations, and on the planted-answer model (features are
non-zero only in the region, so the map's maximum lies there)."""
import numpy as np
import pytest
import torch

from mmxai.errors import MMXAIError
from mmxai.explainers import FEM, EigenCAM, build_explainer
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import close
from planted_model import argmax_thw, in_region, planted_inputs, planted_model
from tiny_models import build, clip_batch, i3d_cfg, preprocess

LAYER = 'backbone.layer3'
TARGETS = torch.tensor([1, 3])


def numpy_fem(grid, sigma=2.0, per_time=False):
    """``[K, t, h, w]`` -> ``[t, h, w]``: sum_k mu_k [A_k >= mu_k + s std_k]."""
    a = grid.double().numpy()
    axes = (2, 3) if per_time else (1, 2, 3)
    mu = a.mean(axis=axes, keepdims=True)
    std = a.std(axis=axes, keepdims=True)
    return torch.from_numpy((mu * (a >= mu + sigma * std)).sum(0))


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


def test_fem_by_hand(i3d):
    inputs = preprocess(i3d, clip_batch(batch=2, frames=8, size=32))['inputs']
    for weighting, sigma in (('global', 1.0), ('temporal', 0.5)):
        ex = FEM(i3d, target_layers=[LAYER], sigma=sigma, weighting=weighting)
        grids, _, _ = EigenCAM(i3d, target_layers=[LAYER]).layer_grids(
            inputs, TARGETS, None)
        a, g = grids[LAYER]
        for i in range(2):
            ref = numpy_fem(a[i, 0], sigma, weighting == 'temporal')
            assert ref.max() > 0
            close(ex.layer_cam(a, g)[i, 0], ref, 1e-6)
        snap = ModelSnapshot(i3d)
        exp = ex.attribute(inputs, TARGETS)
        assert not snap.changes() and exp.raw_maps.max() > 0
        assert exp.settings['weighting'] == weighting
        assert exp.settings['sigma'] == sigma


def test_fem_planted_region():
    model, x = planted_model(), planted_inputs()
    exp = build_explainer('fem', model, target_layers=['backbone'],
                          sigma=0.5).attribute(x, 0)
    assert in_region(argmax_thw(exp.maps[0, 0]))


def test_fem_bad_weighting(i3d):
    with pytest.raises(MMXAIError, match='weighting'):
        FEM(i3d, weighting='spatial')
