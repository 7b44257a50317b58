"""Finer-CAM against torch-cam's ``FinerCAM`` (Grad-CAM and Layer-CAM
bases) on the tiny I3D, with its automatic references (the classes whose
scores are closest to the target's) and explicit ones; plus identities:
``gamma=0`` is the base method, Grad-CAM++'s Finer-CAM is Grad-CAM++ of the
contrast as a callable target. Tolerance ``max|a - b| <= 1e-4 max|b|``."""
import pytest
import torch

from mmxai.adapters.base import upsample_maps
from mmxai.errors import MMXAIError, TargetError
from mmxai.explainers import GradCAM, GradCAMPlusPlus, build_explainer
from mmxai.explainers.cam_finer import contrast_weights
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import close, torchcam, torchcam_maps
from tiny_models import build, clip_batch, i3d_cfg, preprocess

LAYER = 'backbone.layer3'
TARGETS = torch.tensor([1, 3])


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


@pytest.fixture(scope='module')
def inputs(i3d):
    return preprocess(i3d, clip_batch(batch=2))['inputs']


def up(cam, inputs):
    return upsample_maps(cam.unsqueeze(1), inputs.shape[-3:])


@pytest.mark.parametrize('ours,theirs', [('gradcam', 'GradCAM'),
                                         ('layercam', 'LayerCAM')])
def test_equals_torchcam(i3d, inputs, ours, theirs):
    base = getattr(torchcam, theirs)
    ref, _ = torchcam_maps(torchcam.FinerCAM, i3d, inputs, TARGETS, [LAYER],
                           base_method=base, gamma=0.6, num_references=2)
    snap = ModelSnapshot(i3d)
    exp = build_explainer('finer_cam', i3d, base_method=ours,
                          target_layers=[LAYER],
                          num_references=2).attribute(inputs, TARGETS)
    assert not snap.changes()
    close(exp.layer_maps[LAYER], up(ref[LAYER], inputs))
    assert exp.method == 'finer_cam' and exp.targets.tolist() == [1, 3]
    assert exp.extras['references'].shape == (2, 2)
    assert exp.settings['base_method'] == ours


def test_explicit_references_equal_torchcam(i3d, inputs):
    x = inputs[:1]
    ref, _ = torchcam_maps(torchcam.FinerCAM, i3d, x, TARGETS[:1], [LAYER],
                           base_method=torchcam.GradCAM, gamma=1.0)
    # torch-cam's automatic choice with 3 references == our explicit list
    scores = build_explainer('gradcam', i3d, target_layers=[LAYER]).attribute(
        x, TARGETS[:1]).scores
    _, refs = contrast_weights(scores, TARGETS[:1], 1.0, 3)
    exp = build_explainer('finer_cam', i3d, target_layers=[LAYER], gamma=1.0,
                          references=refs[0].tolist()).attribute(x, 1)
    close(exp.layer_maps[LAYER], up(ref[LAYER], x))
    w = torch.zeros(scores.shape[-1])
    w[1] = 1.0
    w[refs[0]] = -1.0 / 3
    close(exp.extras['contrast'], (scores[0] * w).sum().view(1), 1e-5)


def test_identities(i3d, inputs):
    plain = GradCAM(i3d, target_layers=[LAYER]).attribute(inputs, TARGETS)
    zero = build_explainer('finer_cam', i3d, target_layers=[LAYER],
                           gamma=0.0).attribute(inputs, TARGETS)
    # float32: the contrast target backpropagates (s * w).sum(), not a
    # one-hot row; 1.09e-06 was seen once on a loaded 2-core machine
    close(zero.raw_maps, plain.raw_maps, 1e-5)
    fine = build_explainer('finer_cam', i3d, base_method='gradcam++',
                           target_layers=[LAYER]).attribute(inputs, TARGETS)
    w, _ = contrast_weights(plain.scores, TARGETS, 0.6, 3)
    for b in range(2):
        ref = GradCAMPlusPlus(i3d, target_layers=[LAYER]).attribute(
            inputs[b:b + 1], lambda s, b=b: (s * w[b]).sum(-1))
        close(fine.raw_maps[b:b + 1], ref.raw_maps, 1e-5)


def test_bad_options(i3d):
    with pytest.raises(MMXAIError, match='base_method'):
        build_explainer('finer_cam', i3d, base_method='scorecam')
    with pytest.raises(MMXAIError, match='gamma'):
        build_explainer('finer_cam', i3d, gamma=-1)
    with pytest.raises(TargetError, match='callable'):
        build_explainer('finer_cam', i3d).attribute(
            torch.zeros(1, 1, 3, 4, 16, 16), lambda s: s[:, 0])
