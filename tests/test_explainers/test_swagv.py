"""SWAG-V: supervoxels weighted by the average input gradient."""
import pytest
import torch

import tiny_models as tm
from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.explainers.gradient_utils import reduce_channels
from mmxai.explainers.supervoxels import slic_segments
from mmxai.explainers.swagv import SWAGV
from mmxai.testing.coverage import ModelSnapshot
from planted_model import (FRAMES, REGION, SIZE, argmax_thw, in_region,
                           planted_inputs, planted_model)


def test_planted_equals_hand_computation():
    """Planted model: d logit_0 / d x = gain / (T H W) on channel 0 inside
    REGION (its input there is > 0), 0 elsewhere; a grid cell's value is
    that times the share of the cell inside REGION."""
    gain = 2000.0
    model, x = planted_model(gain), planted_inputs()
    snap = ModelSnapshot(model)
    exp = build_explainer(dict(type='swag_v', segmentation='grid',
                               grid=(4, 4, 8), progress=False),
                          model).attribute(x, 0)
    assert not snap.changes()
    t0, t1, h0, h1, w0, w1 = REGION
    inside = torch.zeros(FRAMES, SIZE, SIZE)
    inside[t0:t1, h0:h1, w0:w1] = 1
    ref = torch.zeros(FRAMES, SIZE, SIZE)
    for a in range(0, FRAMES, 2):  # cells of 2 x 8 x 4 voxels
        for b in range(0, SIZE, 8):
            for c in range(0, SIZE, 4):
                cell = (slice(a, a + 2), slice(b, b + 8), slice(c, c + 4))
                ref[cell] = inside[cell].mean() * gain / (FRAMES * SIZE ** 2)
    assert torch.allclose(exp.raw_maps[0, 0], ref, rtol=1e-5, atol=1e-7)
    assert in_region(argmax_thw(exp.raw_maps[0, 0]))
    assert exp.method == 'swag_v'
    assert int(exp.extras['segments'].max()) + 1 == 4 * 4 * 8


@pytest.mark.parametrize('gradient', ['saliency', 'smoothgrad',
                                      'integrated'])
def test_planted_region_found(gradient):
    model, x = planted_model(), planted_inputs()
    exp = SWAGV(model, gradient=gradient, n_samples=2, n_steps=2,
                segmentation='grid', grid=(8, 8, 8),
                progress=False).attribute(x, 0)
    assert in_region(argmax_thw(exp.raw_maps[0, 0]))


def test_segment_mean_of_autograd_gradient():
    """Tiny I3D, two views, SLIC supervoxels: each voxel holds the mean over
    its supervoxel of the channel-summed input gradient (autograd on the
    model's view-averaged score, a loop over segments)."""
    model = tm.build(tm.i3d_cfg())
    x = tm.preprocess(model, tm.clip_batch(views=2, frames=4,
                                           size=16))['inputs']
    ex = SWAGV(model, reduction='sum', n_segments=12, progress=False)
    snap = ModelSnapshot(model)
    exp = ex.attribute(x, 3)
    assert not snap.changes()
    xi = x.detach().clone().requires_grad_(True)
    grad, = torch.autograd.grad(ex.adapter.scores(xi)[0, 3], xi)
    g = reduce_channels(ex.adapter.to_video(grad), 'sum')[0]  # [V, T, H, W]
    assert (g < 0).any() and (g > 0).any()
    video = ex.adapter.to_video(x)[0]
    for v in range(2):
        labels = slic_segments(video[v], 12, 20.0, 0.2)
        assert torch.equal(exp.extras['segments'][0, v], labels)
        ref = torch.zeros_like(g[v])
        for s in labels.unique():
            ref[labels == s] = g[v][labels == s].mean()
        assert torch.allclose(exp.raw_maps[0, v], ref, atol=1e-6,
                              rtol=1e-4)
        assert int(labels.max()) > 2


def test_positive_part():
    """Class 1 of the planted model: gradient -gain/(THW) in REGION, so
    signed cells are <= 0 and ``positive=True`` leaves nothing."""
    model, x = planted_model(), planted_inputs()
    kw = dict(segmentation='grid', grid=(8, 8, 8), reduction='sum',
              progress=False)
    signed = SWAGV(model, **kw).attribute(x, 1).raw_maps
    pos = SWAGV(model, positive=True, **kw).attribute(x, 1).raw_maps
    assert signed.min() < 0 and signed.max() <= 0
    assert torch.equal(pos, torch.zeros_like(pos))


def test_alias_and_options():
    model = planted_model()
    assert type(build_explainer('swagv', model)) is SWAGV
    for bad in (dict(gradient='guided'), dict(segmentation='quickshift'),
                dict(n_samples=0), dict(noise_level=-1)):
        with pytest.raises(MMXAIError):
            SWAGV(model, **bad)
