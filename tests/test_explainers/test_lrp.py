"""LRP: conservation, agreement with gradient x input, batch norm merged
like an explicitly folded model, the planted answer, the model left as
found (also on failure), one-line refusals."""
import copy
import hashlib

import pytest
import torch
from captum.attr import InputXGradient
from torch import nn

import tiny_models as tm
from mmaction.registry import MODELS
from mmxai.errors import MMXAIError, UnsupportedModelError
from mmxai.explainers import LRP, build_explainer
from mmxai.explainers.lrp_canonizers import (batchnorm_pairs,
                                             merged_parameters,
                                             residual_blocks)
from mmxai.testing.coverage import ModelSnapshot
from planted_model import argmax_thw, in_region, planted_inputs, \
    planted_model

#: Conservation tolerance, relative to |s_c|: float32 sums of ~10^4
#: relevances and the stabilisers (eps = 1e-9 / 1e-6) stay far below it.
REL_TOL = 1e-4


@MODELS.register_module(name='MMXAILRPPlainCNN', force=True)
class PlainCNN(nn.Module):
    """Bias-free conv-ReLU-pool-conv-ReLU: every relevant unit is a ReLU's
    positive input, so alpha-beta / z-plus / gamma conserve exactly."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(3, width, 3, padding=1, bias=False), nn.ReLU(),
            nn.MaxPool3d((1, 2, 2)),
            nn.Conv3d(width, 2 * width, 3, padding=1, bias=False), nn.ReLU())

    def init_weights(self):
        pass

    def forward(self, x):
        return self.features(x)


@MODELS.register_module(name='MMXAILRPNormedBackbone', force=True)
class NormedBackbone(nn.Module):
    """A convolution followed by LayerNorm and GELU (not covered)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.norm = nn.LayerNorm(32)
        self.act = nn.GELU()

    def init_weights(self):
        pass

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


def recognizer(backbone: dict, channels: int) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='Recognizer3D', backbone=backbone,
        cls_head=dict(type='I3DHead', num_classes=4, in_channels=channels,
                      spatial_type='avg', dropout_ratio=0.0),
        data_preprocessor=tm.PREPROCESSOR_3D))
    nn.init.normal_(model.cls_head.fc_cls.weight, std=0.5)
    model.cls_head.fc_cls.bias.data.zero_()
    return model.eval()


def bias_free_resnet3d() -> nn.Module:
    """Tiny ResNet3d (I3D layout, residual blocks with downsampling) whose
    batch norms scale (signed, non-unit scales and variances) but do not
    shift, and a bias-free head: merged, every layer is linear without
    bias."""
    model = tm.build(tm.i3d_cfg())
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.zero_()
            m.bias.data.zero_()
            m.weight.data.uniform_(-0.5, 1.5, generator=g)
    model.cls_head.fc_cls.bias.data.zero_()
    return model


def inputs(batch=1, views=1, seed=0, frames=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, frames, size, size, generator=g)


def checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def resnet():
    return bias_free_resnet3d()


@pytest.fixture(scope='module')
def plain():
    return recognizer(dict(type='MMXAILRPPlainCNN'), 12)


def test_epsilon_conserves_on_resnet3d(resnet):
    """Merged batch norm and split residual sums: sum R = s_c per sample
    (two samples, two views each: each sample's views add up)."""
    assert len(batchnorm_pairs(resnet)) > 10 and residual_blocks(resnet)
    x = inputs(batch=2, views=2)
    exp = LRP(resnet, epsilon=1e-9).attribute(x, target=[1, 3])
    with torch.no_grad():
        s = build_explainer('lrp', resnet).adapter.scores(x)
    want = s[torch.arange(2), torch.tensor([1, 3])]
    total = exp.raw_maps.flatten(1).sum(1)
    assert exp.raw_maps.shape == (2, 2, 4, 16, 16)
    assert torch.allclose(exp.extras['explained_score'], want, atol=1e-6)
    assert torch.allclose(total, want, rtol=REL_TOL, atol=1e-7), (total,
                                                                  want)
    assert (exp.raw_maps < 0).any() and (exp.raw_maps > 0).any()  # signed


@pytest.mark.parametrize('canonize', [True, False])
def test_epsilon_small_equals_gradient_times_input(resnet, canonize):
    """eps -> 0 on a bias-free ReLU net: gradient x input, against
    Captum's InputXGradient on the same scores (channels summed)."""
    x = inputs(seed=1)
    exp = LRP(resnet, epsilon=1e-9, canonize=canonize).attribute(x, 2)
    adapter = build_explainer('lrp', resnet).adapter
    with torch.enable_grad():
        ref = InputXGradient(adapter.scores).attribute(
            x.clone().requires_grad_(True), target=2).sum(2)
    scale = ref.abs().max()
    assert (exp.raw_maps - ref).abs().max() <= 1e-4 * scale
    # a large eps is not the gradient any more: absorbs relevance
    big = LRP(resnet, epsilon=1.0).attribute(x, 2)
    assert (big.raw_maps - ref).abs().max() > 1e-2 * scale
    assert big.raw_maps.sum().abs() < ref.sum().abs()


@pytest.mark.parametrize('rule', ['zplus', 'alpha1beta0', 'alpha2beta1',
                                  'gamma', 'epsilon'])
def test_rules_conserve_on_bias_free_relu_net(plain, rule):
    x = inputs(seed=2)
    exp = LRP(plain, rule=rule, epsilon=1e-9).attribute(x, 1)
    s = exp.extras['explained_score']
    assert torch.allclose(exp.raw_maps.sum(), s[0], rtol=REL_TOL, atol=1e-7)


@pytest.mark.parametrize('first', ['flat', 'wsquare', 'zplus'])
def test_first_rules_conserve(plain, first):
    x = inputs(seed=3)
    exp = LRP(plain, rule='epsilon', epsilon=1e-9,
              first_rule=first).attribute(x, 0)
    s = exp.extras['explained_score'][0]
    assert torch.allclose(exp.raw_maps.sum(), s, rtol=REL_TOL, atol=1e-7)
    if first == 'flat':  # the share ignores the input: not gradient x input
        eps = LRP(plain, epsilon=1e-9).attribute(x, 0)
        assert not torch.allclose(exp.raw_maps, eps.raw_maps, atol=1e-4)


def test_zplus_is_positive_where_inputs_are(plain):
    """z-plus on non-negative inputs gives non-negative relevance (its
    defining property), whatever the weights."""
    x = inputs(seed=4).abs()
    exp = LRP(plain, rule='zplus').attribute(x, 2)
    if exp.extras['explained_score'][0] > 0:
        assert exp.raw_maps.min() >= -1e-7


def folded(model: nn.Module) -> nn.Module:
    """A copy with every batch norm folded into its convolution's weights
    and replaced by Identity (the canonizer's arithmetic, done for real)."""
    copy_ = copy.deepcopy(model)
    for bn, conv in batchnorm_pairs(copy_).items():
        w, b = merged_parameters(conv, bn)
        conv.weight.data.copy_(w)
        conv.bias = nn.Parameter(b)
        for parent in copy_.modules():
            for name, child in parent.named_children():
                if child is bn:
                    setattr(parent, name, nn.Identity())
    return copy_


@pytest.fixture(scope='module')
def shifted():
    model = tm.build(tm.i3d_cfg())
    return model, folded(model)


@pytest.mark.parametrize('rule', ['zplus', 'alpha2beta1', 'gamma'])
def test_merged_batch_norm_equals_folded_model(shifted, rule):
    """The merged rule equals the rule on the explicitly folded model
    (BN with shifts, conv biases created by folding): for alpha-beta and
    gamma the merge matters (not so for epsilon)."""
    model, fold = shifted
    x = inputs(seed=5)
    with torch.no_grad():
        a = build_explainer('lrp', model).adapter.scores(x)
        b = build_explainer('lrp', fold).adapter.scores(x)
    assert torch.allclose(a, b, atol=1e-4)
    exp = LRP(model, rule=rule).attribute(x, 1)
    ref = LRP(fold, rule=rule).attribute(x, 1)
    scale = ref.raw_maps.abs().max()
    tol = 1e-3
    assert (exp.raw_maps - ref.raw_maps).abs().max() <= tol * scale
    if rule == 'alpha2beta1':
        plain_bn = LRP(model, rule=rule, canonize=False).attribute(x, 1)
        assert (plain_bn.raw_maps - ref.raw_maps).abs().max() > 2 * tol * scale


def test_planted_answer_in_region():
    model, x = planted_model(), planted_inputs()
    for kw in (dict(), dict(rule='zplus'), dict(rule='gamma')):
        exp = LRP(model, **kw).attribute(x, 0)
        assert in_region(argmax_thw(exp.raw_maps[0, 0])), kw


def test_model_left_as_found(resnet):
    model = tm.build(tm.i3d_cfg())
    model.train()
    snap, before = ModelSnapshot(model), checksum(model)
    forwards = [m for m, _ in residual_blocks(model)]
    LRP(model, rule='alpha2beta1').attribute(inputs(), 0)
    assert snap.changes() == [] and checksum(model) == before
    assert all('forward' not in vars(m) for m in forwards)

    # an exception midway (in the head, after every backbone hook ran)
    def boom(*args):
        raise RuntimeError('midway')
    handle = model.cls_head.fc_cls.register_forward_pre_hook(boom)
    snap = ModelSnapshot(model)
    explainer = LRP(model, rule='gamma')
    with pytest.raises(RuntimeError, match='midway'):
        explainer.attribute(inputs(), 0)
    assert snap.changes() == [] and checksum(model) == before
    assert all('forward' not in vars(m) for m in forwards)
    assert explainer._pending == {} and explainer._leaf is None
    handle.remove()
    assert model.training


def test_unsupported_models_one_line():
    model = recognizer(dict(type='MMXAILRPNormedBackbone'), 4)
    with pytest.raises(UnsupportedModelError) as err:
        LRP(model)
    msg = str(err.value)
    assert '\n' not in msg and 'GELU' in msg and 'LayerNorm' in msg


@pytest.mark.parametrize('kw', [dict(rule='nope'), dict(first_rule='nope'),
                                dict(rule='flat'), dict(epsilon=-1.0),
                                dict(rule='alpha_beta', alpha=3, beta=1),
                                dict(rule='gamma', gamma=-1),
                                dict(canonize='yes')])
def test_bad_options_one_line(plain, kw):
    with pytest.raises(MMXAIError) as err:
        LRP(plain, **kw)
    assert '\n' not in str(err.value)


def test_name_and_settings(plain):
    exp = build_explainer('lrp', plain, rule='alpha_beta', alpha=2.0,
                          beta=1.0).attribute(inputs(), 0)
    assert exp.method == 'lrp'
    assert exp.settings['rule'] == 'alpha_beta'
    assert exp.settings['alpha'] == 2.0


def zero_shifts(model: nn.Module) -> nn.Module:
    """Batch norms without shift, layers without bias: conservative."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.zero_()
            m.bias.data.zero_()
        elif isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and \
                m.bias is not None:
            m.bias.data.zero_()
    return model


@pytest.mark.sweep
def test_slowfast_both_pathways_first_and_conserving():
    """SlowFast (MMAction2's config built small): both pathways' conv1
    read the input (temporal subsampling in between) and get the first
    rule; epsilon conserves through the lateral connections."""
    from mmxai.testing.toolbox_configs import build_small, \
        representative_configs
    small = build_small(representative_configs()['slowfast'], size=32)
    model = zero_shifts(small.model)
    explainer = LRP(model, epsilon=1e-9)
    exp = explainer.attribute(small.inputs, 0)
    assert sorted(explainer.first_layers) == [
        'backbone.fast_path.conv1.conv', 'backbone.slow_path.conv1.conv']
    s = exp.extras['explained_score'][0]
    assert torch.allclose(exp.raw_maps.sum(), s, rtol=REL_TOL, atol=1e-7)
    flat = LRP(model, epsilon=1e-9, first_rule='flat').attribute(
        small.inputs, 0)
    assert torch.allclose(flat.raw_maps.sum(), s, rtol=REL_TOL, atol=1e-7)


def test_x3d_gates_constant_conserving_and_restored():
    """X3D (config built small): squeeze-excitation and Swish gates as
    constants keep conservation; their instance forwards are removed
    after; without canonizers X3D is n/a with the gates named."""
    from mmxai.testing.toolbox_configs import build_small, \
        representative_configs
    small = build_small(representative_configs()['x3d'], size=32)
    model = zero_shifts(small.model)
    snap, before = ModelSnapshot(model), checksum(model)
    explainer = LRP(model, epsilon=1e-9)
    exp = explainer.attribute(small.inputs, 0)
    assert explainer.first_layers == ['backbone.conv1_s.conv']
    s = exp.extras['explained_score'][0]
    assert torch.allclose(exp.raw_maps.sum(), s, rtol=REL_TOL, atol=1e-7)
    assert snap.changes() == [] and checksum(model) == before
    assert not any('forward' in vars(m) for m in model.modules())
    with pytest.raises(UnsupportedModelError, match='SEModule, Sigmoid'):
        LRP(model, canonize=False)


def test_tsn_2d_resnet_conserves():
    """A 2D recognizer (TSN, ResNet-18 with 2D residual blocks split, the
    average consensus): epsilon conserves per sample, map per frame."""
    model = zero_shifts(tm.build(tm.tsn_cfg()))
    assert len(residual_blocks(model)) == 8
    x = torch.randn(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    exp = LRP(model, epsilon=1e-9).attribute(x, 2)
    assert exp.raw_maps.shape == (1, 1, 4, 32, 32)
    s = exp.extras['explained_score'][0]
    assert torch.allclose(exp.raw_maps.sum(), s, rtol=REL_TOL, atol=1e-7)
