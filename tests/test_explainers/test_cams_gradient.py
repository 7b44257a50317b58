"""XGrad-CAM, Layer-CAM, HiResCAM, Grad-CAM element-wise (and Grad-CAM,
Grad-CAM++) against torch-cam on the tiny I3D (Conv3d), plus identities.

torch-cam's extractors take the ``[N, C, t, h, w]`` activations of a
Conv3d layer; its raw maps (``normalized=False``, its ReLU applied) are
compared with mmxai's raw layer maps: at the layer's own resolution
(``layer_grids`` / ``layer_cam``) and, end to end, with
``Explanation.layer_maps`` against torch-cam's map upsampled by the same
trilinear resize. Tolerance: ``max|a - b| <= 1e-4 max|b|`` (float32; the
only systematic difference is torch-cam's ``eps=1e-8`` in denominators).
"""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmxai.adapters.base import upsample_maps
from mmxai.errors import MMXAIError
from mmxai.explainers import (GradCAM, GradCAMElementWise, GradCAMPlusPlus,
                              HiResCAM, LayerCAM, XGradCAM, build_explainer)
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import close, torchcam, torchcam_maps
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsm_cfg

INNER, HEAD_INPUT = 'backbone.layer3', 'backbone'
TARGETS = torch.tensor([1, 3])


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


@pytest.fixture(scope='module')
def inputs(i3d):
    return preprocess(i3d, clip_batch(batch=2))['inputs']


def feature_maps(explainer, inputs, targets=TARGETS):
    """mmxai's maps at each target layer's resolution ``[B, t, h, w]``."""
    grids, _, _ = explainer.layer_grids(inputs, targets, None)
    out = {}
    for name, (a, g) in grids.items():
        cam = explainer.layer_cam(a, g)
        out[name] = (F.relu(cam) if explainer.relu else cam)[:, 0]
    return out


def upsampled(cam, inputs):
    return upsample_maps(cam.unsqueeze(1), inputs.shape[-3:])


@pytest.mark.parametrize('ours,theirs', [
    (XGradCAM, 'XGradCAM'), (LayerCAM, 'LayerCAM')])
@pytest.mark.parametrize('layer', [INNER, HEAD_INPUT])
def test_equals_torchcam(i3d, inputs, ours, theirs, layer):
    explainer = ours(i3d, target_layers=[layer])
    ref, _ = torchcam_maps(getattr(torchcam, theirs), i3d, inputs, TARGETS,
                           [layer])
    close(feature_maps(explainer, inputs)[layer], ref[layer])
    snap = ModelSnapshot(i3d)
    exp = explainer.attribute(inputs, target=TARGETS)
    assert not snap.changes()
    close(exp.layer_maps[layer], upsampled(ref[layer], inputs))
    close(exp.raw_maps, upsampled(ref[layer], inputs))


@pytest.mark.parametrize('layer', [INNER, HEAD_INPUT])
def test_gradcam_and_gradcampp_equal_torchcam(i3d, inputs, layer):
    ref, _ = torchcam_maps(torchcam.GradCAM, i3d, inputs, TARGETS, [layer])
    exp = GradCAM(i3d, target_layers=[layer]).attribute(inputs, TARGETS)
    close(exp.layer_maps[layer], upsampled(ref[layer], inputs))
    # torch-cam 0.5's GradCAMpp divides a copy (``alpha[mask].div_``), so
    # its alpha is g^2; its SmoothGradCAMpp with one sample of std 1e-20 (none) is
    # Grad-CAM++ with the denominator 2 g^2 + sum A g^3 (mmxai 'sum_ag3',
    # equal to the paper's at a GAP + linear head's input).
    # torch-cam adds eps=1e-8 to the denominator, the size of g^2 on this
    # tiny model: its classifier is scaled by 1e3 so that eps is negligible
    loud = copy.deepcopy(i3d)
    with torch.no_grad():
        loud.cls_head.fc_cls.weight.mul_(1e3)
    ref, _ = torchcam_maps(torchcam.SmoothGradCAMpp, loud, inputs, TARGETS,
                           [layer], num_samples=1, std=1e-20)
    for denominator in ('sum_ag3', 'paper'):
        if denominator == 'paper' and layer == INNER:
            continue  # the two differ at inner layers
        exp = GradCAMPlusPlus(loud, target_layers=[layer],
                              denominator=denominator).attribute(
                                  inputs, TARGETS)
        close(exp.layer_maps[layer], upsampled(ref[layer], inputs))


def test_layercam_fusion_equals_torchcam(i3d, inputs):
    layers = ['backbone.layer2', INNER, HEAD_INPUT]
    explainer = LayerCAM(i3d, target_layers=layers)
    ref, fuse = torchcam_maps(torchcam.LayerCAM, i3d, inputs, TARGETS,
                              layers)
    # torch-cam's fuse_cams: tanh(2 cam) of the maps given, resized to the
    # target shape, element-wise max; given here the maps over their max
    scaled = [m / m.flatten(1).amax(1).view(-1, 1, 1, 1) for m in
              (ref[n] for n in layers)]
    theirs = fuse(scaled, tuple(inputs.shape[-3:]))
    exp = explainer.attribute(inputs, TARGETS)
    close(exp.raw_maps[:, 0], theirs)
    assert exp.raw_maps.max() <= 1
    summed = LayerCAM(i3d, target_layers=layers, fusion='sum').attribute(
        inputs, TARGETS)
    close(summed.raw_maps, sum(exp.layer_maps[n] for n in layers))


def test_identities(i3d, inputs):
    # HiResCAM == Grad-CAM where g is constant over (t, h, w)
    hires = HiResCAM(i3d, target_layers=[HEAD_INPUT]).attribute(inputs,
                                                                TARGETS)
    grad = GradCAM(i3d, target_layers=[HEAD_INPUT]).attribute(inputs, TARGETS)
    close(hires.raw_maps, grad.raw_maps, 1e-5)
    # ...and not at an inner layer
    hires_in = feature_maps(HiResCAM(i3d, target_layers=[INNER]), inputs)
    grids, _, _ = HiResCAM(i3d, target_layers=[INNER]).layer_grids(
        inputs, TARGETS, None)
    a, g = grids[INNER]
    grad_in = F.relu((g.mean((3, 4, 5), keepdim=True) * a).sum(2))[:, 0]
    assert (hires_in[INNER] - grad_in).abs().max() > 1e-3 * grad_in.max()
    # element-wise == Layer-CAM where A >= 0 (ReLU outputs), and its
    # unclipped sum is HiResCAM's signed map
    for layer in (INNER, HEAD_INPUT):
        elem = feature_maps(GradCAMElementWise(i3d, target_layers=[layer]),
                            inputs)[layer]
        layer_cam = feature_maps(LayerCAM(i3d, target_layers=[layer]),
                                 inputs)[layer]
        close(elem, layer_cam, 1e-6)
    ex = HiResCAM(i3d, target_layers=[INNER], relu=False)
    grids, _, _ = ex.layer_grids(inputs, TARGETS, None)
    a, g = grids[INNER]
    close(ex.layer_cam(a, g), (a * g).sum(2), 1e-6)
    close(GradCAMElementWise(i3d).layer_cam(-a, g),
          F.relu(-(a * g)).sum(2), 1e-6)


def test_names_options_and_2d(i3d, inputs):
    for name in ('xgradcam', 'layercam', 'hirescam', 'gradcam_elementwise'):
        assert build_explainer(name, i3d).name == name
    with pytest.raises(MMXAIError, match='does not apply'):
        HiResCAM(i3d, weighting='temporal')
    with pytest.raises(MMXAIError, match='unknown fusion'):
        LayerCAM(i3d, fusion='mean')
    x = XGradCAM(i3d, weighting='temporal').attribute(inputs, TARGETS)
    assert torch.isfinite(x.raw_maps).all()
    # a 2D family: frames regrouped in time, maps [B, V, T, H, W]
    tsm = build(tsm_cfg())
    x2 = preprocess(tsm, clip_batch(two_d=True))['inputs']
    for cls in (XGradCAM, LayerCAM, HiResCAM, GradCAMElementWise):
        snap = ModelSnapshot(tsm)
        exp = cls(tsm).attribute(x2)
        assert exp.maps.shape == (1, 1, 8, 32, 32)
        assert torch.isfinite(exp.raw_maps).all()
        if cls is LayerCAM:
            assert exp.raw_maps.max() > 0
        assert not snap.changes()
