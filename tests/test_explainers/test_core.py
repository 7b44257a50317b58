"""Explainer core: Grad-CAM, Grad-CAM++, Saliency Tubes on tiny real models."""
import pytest
import torch
import torch.nn.functional as F

from mmxai.errors import (LayerNotFoundError, MMXAIError, TargetError,
                          UnsupportedModelError)
from mmxai.explainers import (GradCAM, GradCAMPlusPlus, SaliencyTubes,
                              build_explainer)
from mmxai.utils import minmax_normalize
from tiny_models import (build, clip_batch, i3d_cfg, preprocess, tsm_cfg,
                         tsn_cfg)


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


@pytest.fixture(scope='module')
def i3d_inputs(i3d):
    return preprocess(i3d, clip_batch(batch=2, views=3))['inputs']


def manual_layer3(model, x):
    """ResNet3d forward up to layer3, written out by hand (no hooks)."""
    bb = model.backbone
    y = bb.conv1(x)
    if bb.with_pool1:
        y = bb.maxpool(y)
    for i, name in enumerate(bb.res_layers[:3]):
        y = getattr(bb, name)(y)
        if i == 0 and bb.with_pool2:
            y = bb.pool2(y)
    return y


def reference_cam(model, inputs, target, weighting, plus_plus=False):
    """Grad-CAM at backbone.layer3 computed by hand, one view at a time."""
    b, v = inputs.shape[:2]
    maps = []
    for i in range(b):
        per_view = []
        for j in range(v):
            x = inputs[i, j:j + 1]
            with torch.enable_grad():
                a = manual_layer3(model, x).detach().requires_grad_(True)
                feat = model.backbone.layer4(a)
                score = model.cls_head(feat)[0, target[i]] / v
                g, = torch.autograd.grad(score, a)
            dims = (2, 3, 4) if weighting == 'global' else (3, 4)
            if plus_plus:  # Eq. 19: 2 g^2 + g^3 sum A
                denom = 2 * g**2 + g**3 * a.sum(dims, keepdim=True)
                alpha = torch.where(denom != 0, g**2 / denom, 0 * g)
                w = (alpha * F.relu(g)).sum(dims, keepdim=True)
            else:
                w = g.mean(dims, keepdim=True)
            cam = F.relu((w * a).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-3:], mode='trilinear',
                                align_corners=False)
            per_view.append(cam[0, 0])
        maps.append(torch.stack(per_view))
    return torch.stack(maps).detach()


@pytest.mark.parametrize('weighting', ['global', 'temporal'])
@pytest.mark.parametrize('cls', [GradCAM, GradCAMPlusPlus])
def test_gradcam_matches_hand_computed_reference(i3d, i3d_inputs, weighting,
                                                 cls):
    exp = cls(i3d, target_layers=['backbone.layer3'],
              weighting=weighting).attribute(i3d_inputs, target=[1, 3])
    ref = reference_cam(i3d, i3d_inputs, [1, 3], weighting,
                        plus_plus=cls is GradCAMPlusPlus)
    assert exp.maps.shape == (2, 3, 8, 32, 32)
    assert ref.abs().max() > 0
    torch.testing.assert_close(exp.raw_maps, ref, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(exp.maps, minmax_normalize(ref), rtol=1e-4,
                               atol=1e-5)
    assert exp.targets.tolist() == [1, 3]


def test_scores_are_predicts_scores_before_softmax(i3d):
    data = clip_batch(batch=2, views=3)
    with torch.no_grad():
        preds = i3d.test_step(data)  # average_clips='prob' in the config
    exp = GradCAM(i3d).explain(data)
    probs = torch.stack([p.pred_score for p in preds])
    # 'prob' averages softmaxes; the explained score is the mean pre-softmax
    # score, whose arg-max matches on this model and whose softmax differs.
    assert exp.scores.shape == (2, 5)
    with torch.no_grad():
        x = preprocess(i3d, data)['inputs']
        feats = i3d.backbone(x.flatten(0, 1))
        per_view = i3d.cls_head(feats).view(2, 3, 5)
    torch.testing.assert_close(exp.scores, per_view.mean(1))
    torch.testing.assert_close(per_view.softmax(-1).mean(1), probs)
    assert i3d.cls_head.average_clips == 'prob'  # restored


def test_saliency_tubes_cam_identity(i3d, i3d_inputs):
    """For GAP + linear: mean_{t,h,w} M_c = S_c - b_c (per view)."""
    st = SaliencyTubes(i3d)
    exp = st.attribute(i3d_inputs, target=[0, 4])
    fmap = exp.extras['feature_maps']  # [B, V, t, h, w]
    with torch.no_grad():
        feats = i3d.backbone(i3d_inputs.flatten(0, 1))
        per_view = i3d.cls_head(feats).view(2, 3, 5)
    bias = i3d.cls_head.fc_cls.bias
    for i, c in enumerate([0, 4]):
        torch.testing.assert_close(fmap[i].flatten(1).mean(-1),
                                   per_view[i, :, c] - bias[c],
                                   rtol=1e-4, atol=1e-5)
    assert exp.maps.shape == (2, 3, 8, 32, 32)


def test_gradcam_on_head_input_equals_relu_saliency_tube(i3d, i3d_inputs):
    """Grad-CAM at the head input of a GAP+linear head is ReLU(CAM)/(thw*V)."""
    gc = GradCAM(i3d, target_layers=['backbone']).attribute(i3d_inputs,
                                                            target=2)
    st = SaliencyTubes(i3d).attribute(i3d_inputs, target=2)
    fmap = st.extras['feature_maps']
    n = fmap[0, 0].numel() * i3d_inputs.shape[1]
    expected = F.relu(fmap) / n
    from mmxai.adapters import upsample_maps
    torch.testing.assert_close(gc.raw_maps,
                               upsample_maps(expected, (8, 32, 32)),
                               rtol=1e-4, atol=1e-7)


def test_recognizer2d_regroups_frames_in_time():
    model = build(tsm_cfg(num_segments=4))
    data = clip_batch(batch=2, views=2, frames=4, two_d=True)
    x = preprocess(model, data)['inputs']  # [2, 8, 3, 32, 32]
    exp = GradCAM(model).attribute(x, target=1)
    assert exp.maps.shape == (2, 2, 4, 32, 32)
    # swapping the two views of sample 0 swaps their maps
    swapped = x.clone()
    swapped[0] = torch.cat([x[0, 4:], x[0, :4]])
    exp2 = GradCAM(model).attribute(swapped, target=1)
    torch.testing.assert_close(exp2.raw_maps[0, 0], exp.raw_maps[0, 1],
                               rtol=1e-4, atol=1e-6)
    # the grid of backbone features is (view, time)-ordered like the input
    grid = exp.layer_maps['backbone']
    assert grid.shape == (2, 2, 4, 32, 32)


def test_recognizer2d_normalisation_keeps_temporal_importance():
    maps = torch.rand(1, 1, 4, 8, 8)
    maps[0, 0, 2] *= 3
    norm = minmax_normalize(maps)
    assert norm.max() == 1 and norm.min() == 0
    mass = norm[0, 0].flatten(1).mean(-1)
    assert mass[2] > 2 * mass[[0, 1, 3]].max()


def test_tsn_all_frames_one_view_and_saliency_tubes():
    model = build(tsn_cfg())
    x = preprocess(model, clip_batch(batch=1, views=1, frames=3,
                                     two_d=True))['inputs']
    st = SaliencyTubes(model).attribute(x)
    assert st.maps.shape == (1, 1, 3, 32, 32)
    fmap = st.extras['feature_maps']
    with torch.no_grad():
        score = model.cls_head(model.backbone(x[0]), num_segs=3)[0]
    c = int(st.targets[0])
    bias = model.cls_head.fc_cls.bias[c]
    torch.testing.assert_close(fmap.mean(), score[c] - bias, rtol=1e-4,
                               atol=1e-5)


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) +
               len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize('method', ['gradcam', 'gradcam++', 'saliency_tubes'])
def test_model_restored_after_success_and_failure(method):
    model = build(i3d_cfg())
    model.train()
    model.cls_head.dropout.eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    hooks = _hook_count(model)
    x = preprocess(model, clip_batch())['inputs']
    exp = build_explainer(method, model)
    exp.attribute(x)
    assert [m.training for m in model.modules()] == modes
    assert _hook_count(model) == hooks
    assert model.cls_head.average_clips == 'prob'
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(TargetError, match='out of range'):
        exp.attribute(x, target=17)
    assert [m.training for m in model.modules()] == modes
    assert _hook_count(model) == hooks

    def boom(*args):
        raise RuntimeError('boom')
    handle = model.backbone.layer4.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match='boom'):
        exp.attribute(x)
    handle.remove()
    assert _hook_count(model) == hooks
    assert [m.training for m in model.modules()] == modes
    assert model.cls_head.average_clips == 'prob'


def test_works_inside_no_grad_and_inference_of_test_loop(i3d):
    x = preprocess(i3d, clip_batch())['inputs']
    with torch.no_grad():
        exp = GradCAM(i3d).attribute(x)
    assert exp.raw_maps.max() > 0


def test_frozen_parameters_still_give_gradients():
    model = build(i3d_cfg())
    for p in model.parameters():
        p.requires_grad_(False)
    x = preprocess(model, clip_batch())['inputs']
    exp = GradCAM(model, target_layers=['backbone.layer2']).attribute(x)
    assert exp.raw_maps.max() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_targets_gt_and_errors(i3d):
    data = clip_batch(batch=2, labels=[3, 1])
    exp = GradCAM(i3d).explain(data, target='gt')
    assert exp.targets.tolist() == [3, 1]
    with pytest.raises(TargetError, match='ground-truth'):
        GradCAM(i3d).explain(clip_batch(batch=2), target='gt')
    with pytest.raises(TargetError, match=r'out of range.*5 classes'):
        GradCAM(i3d).explain(data, target=[0, 5])
    with pytest.raises(TargetError, match='unknown target'):
        GradCAM(i3d).explain(data, target='best')


def test_unknown_layer_suggests_valid_names(i3d):
    with pytest.raises(LayerNotFoundError) as err:
        GradCAM(i3d, target_layers=['backbone.layer5'])
    msg = str(err.value)
    assert 'backbone.layer5' in msg and 'backbone.layer4' in msg
    assert '\n' not in msg


def test_slash_separated_layer_names_accepted(i3d):
    x = preprocess(i3d, clip_batch())['inputs']
    exp = GradCAM(i3d, target_layers='backbone/layer3').attribute(x)
    assert 'backbone.layer3' not in exp.layer_maps  # name kept as given
    assert exp.maps.shape == (1, 1, 8, 32, 32)


def test_unsupported_models_and_heads():
    cfg = i3d_cfg()
    cfg['cls_head'] = dict(type='X3DHead', num_classes=5, in_channels=32,
                           fc1_bias=False)
    x3d_head = build(cfg)
    with pytest.raises(UnsupportedModelError, match='Saliency Tubes'):
        SaliencyTubes(x3d_head)
    # Grad-CAM is defined for any differentiable head
    x = preprocess(x3d_head, clip_batch())['inputs']
    assert GradCAM(x3d_head).attribute(x).maps.shape == (1, 1, 8, 32, 32)
    with pytest.raises(UnsupportedModelError, match='supports'):
        GradCAM(torch.nn.Linear(2, 2))


def test_unknown_method_lists_available(i3d):
    with pytest.raises(MMXAIError, match='available:.*gradcam'):
        build_explainer('gradcom', i3d)
    exp = build_explainer(dict(type='mmxai.GradCAM', weighting='temporal'),
                          i3d)
    assert exp.weighting == 'temporal'
    with pytest.raises(MMXAIError, match='weighting'):
        build_explainer('gradcam', i3d, weighting='spatial')


def test_explanation_helpers(i3d, i3d_inputs):
    exp = SaliencyTubes(i3d).attribute(i3d_inputs)
    ti = exp.temporal_importance()
    assert ti.shape == (2, 3, 8)
    torch.testing.assert_close(ti.sum(-1), torch.ones(2, 3))
    one = exp[1]
    assert one.maps.shape == (1, 3, 8, 32, 32)
    summary = one.summary(class_names=list('abcde'))
    assert summary['target']['label'] == 'abcde'[int(one.targets[0])]
    assert len(summary['top5']) == 5
    arrays = exp.to_numpy()
    assert arrays['maps'].shape == (2, 3, 8, 32, 32)
