"""LRP's one-pass path (epsilon as a gradient rescaled at every layer
output, residual sums the same way, batch norm folded into cached
convolution weights, scores and targets from the explained forward
itself) against the implementation before it, kept here as
:class:`ReferenceLRP`: every rule through ``swap_gradient(z, mod)``, batch
norm run as it is, and a clean gradient-free forward for the scores
first."""
import contextlib
import copy
from typing import Iterator

import pytest
import torch
from torch import Tensor

import tiny_models as tm
from mmxai.explainers import LRP
from mmxai.explainers import lrp as lrp_module
from mmxai.explainers import lrp_canonizers
from mmxai.explainers.attribution import Attribution
from mmxai.explainers.gradient_utils import frozen_parameters
from mmxai.explainers.lrp_canonizers import (FoldedBatchNorms,
                                             MergedParameters,
                                             batchnorm_pairs,
                                             merged_parameters)
from mmxai.explainers.lrp_rules import (epsilon_scale, scale_gradient,
                                        stabilize, swap_gradient)
from mmxai.explainers.view_scorer import model_inputs
from mmxai.testing.coverage import ModelSnapshot


def _old_residual_sum(branch: Tensor, shortcut: Tensor, eps: float
                      ) -> Tensor:
    y = branch + shortcut
    yd = y.detach()
    return swap_gradient(y, y * (yd / stabilize(yd, eps)))


def _old_split_forward(block, convs, eps, x):
    identity = x
    out = x
    for name in convs:
        out = getattr(block, name)(out)
    if block.downsample is not None:
        identity = block.downsample(x)
    return block.relu(_old_residual_sum(out, identity, eps))


@contextlib.contextmanager
def _old_residuals() -> Iterator[None]:
    saved = lrp_canonizers._split_forward
    lrp_canonizers._split_forward = _old_split_forward
    try:
        yield
    finally:
        lrp_canonizers._split_forward = saved


@contextlib.contextmanager
def _unfolded() -> Iterator[None]:
    """Batch norm merged by the rules only (no folded convolution)."""
    @contextlib.contextmanager
    def nothing_folded(*args):
        yield FoldedBatchNorms({}, {})
    saved = lrp_module.folded_batchnorms
    lrp_module.folded_batchnorms = nothing_folded
    try:
        yield
    finally:
        lrp_module.folded_batchnorms = saved


class ReferenceLRP(LRP):
    """:class:`LRP` as it was: two forwards, every rule through ``mod``,
    the model's own ReLUs and residual forward (in-place ReLU after the
    split sum), batch norm run (with :func:`_unfolded`)."""

    def _layout(self):
        return super()._layout()._replace(relus={})  # ReLUs as they are

    def _apply(self, rule, fn, x, weight, bias, out):
        new = swap_gradient(out, rule.modified(fn, x, weight, bias, out))
        self._hooked.add(new.grad_fn)
        return new

    def _attribute(self, inputs, target, data_samples):
        scores, probs, targets = self.scores_probs_targets(
            inputs, target, data_samples)
        video = self.adapter.to_video(inputs).detach()
        x = video.clone().requires_grad_(True)
        with torch.enable_grad(), frozen_parameters(self.model), \
                _old_residuals(), _unfolded(), self.rules_in_place(x):
            s = self.adapter.scores(model_inputs(self.adapter, x)).float()
            picked = s.gather(1, targets.view(-1, 1).to(s.device))[:, 0]
            grad, = torch.autograd.grad(picked.sum(), x)
        relevance = (x.detach() * grad).sum(2)
        extras = dict(relevance_sum=relevance.flatten(1).sum(1).detach(),
                      explained_score=picked.detach())
        return Attribution(relevance.float(), scores, targets,
                           extras=extras, probs=probs)


def inputs(batch=1, views=1, seed=0, frames=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, frames, size, size, generator=g)


@pytest.fixture(scope='module')
def resnet():
    """Tiny ResNet3d with batch norms that shift and scale (signed): the
    merged pairs, residual splits and biases all matter."""
    model = tm.build(tm.i3d_cfg())
    g = torch.Generator().manual_seed(11)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(-0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.2, generator=g)
            m.running_mean.normal_(0, 0.2, generator=g)
    return model


def test_epsilon_scale_is_the_stabilised_quotient():
    """``|z| / (|z| + eps)`` is ``z / stab(z)`` float for float."""
    z = torch.cat([torch.randn(10000) * 10 ** torch.randint(
        -8, 3, (10000,)).float(), torch.tensor([0.0, -0.0, 1e-6, -1e-6])])
    for eps in (1e-9, 1e-6, 0.25):
        old = z / stabilize(z, eps)
        assert torch.equal(epsilon_scale(z, eps), old)


def test_scale_gradient_leaves_values_and_scales_gradients():
    x = torch.randn(6, requires_grad=True)
    z = x * 3
    s = torch.rand(6)
    y = scale_gradient(z, s)
    assert y is z
    torch.relu_(y)  # in place after the hook: the hook sees dL/dz
    y.sum().backward()
    assert torch.equal(x.grad, 3 * s * (x.detach() > 0))


def assert_close_maps(exp, ref, tol=1e-5):
    scale = ref.raw_maps.abs().max()
    err = (exp.raw_maps - ref.raw_maps).abs().max()
    assert err <= tol * scale, (err, scale)
    assert torch.allclose(exp.raw_maps.flatten(1).sum(1),
                          ref.raw_maps.flatten(1).sum(1), rtol=tol,
                          atol=tol * scale)


KWS = [dict(), dict(epsilon=0.3), dict(epsilon=0.0), dict(canonize=False),
       dict(first_rule='flat'), dict(linear_rule='alpha2beta1')]


@pytest.mark.parametrize('kw', KWS)
def test_one_pass_equals_reference(resnet, kw):
    """Folded batch norms: the same relevance, scores, probabilities and
    targets as before up to float rounding ('pred' target, two samples of
    two views); without folding (the rescaled gradients, the single
    forward): float for float."""
    x = inputs(batch=2, views=2, seed=1)
    new, old = LRP(resnet, **kw), ReferenceLRP(resnet, **kw)
    exp, ref = new.attribute(x), old.attribute(x)
    assert torch.equal(exp.targets, ref.targets)
    assert torch.allclose(exp.scores, ref.scores, rtol=1e-5, atol=1e-6)
    assert torch.allclose(exp.mean_probs, ref.mean_probs, rtol=1e-5,
                          atol=1e-7)
    assert_close_maps(exp, ref)
    assert new.first_layers == old.first_layers == ['backbone.conv1.conv']
    with _unfolded():
        same = LRP(resnet, **kw).attribute(x)
    assert torch.equal(same.raw_maps, ref.raw_maps)
    assert torch.equal(same.scores, ref.scores)
    assert torch.equal(same.mean_probs, ref.mean_probs)
    assert torch.equal(same.extras['explained_score'],
                       ref.extras['explained_score'])


@pytest.mark.parametrize('rule', ['gamma', 'alpha2beta1'])
def test_other_rules_equal_reference(resnet, rule):
    """The rules that keep their extra layer evaluations: unchanged (up
    to the folded convolutions' rounding)."""
    x = inputs(seed=2)
    exp = LRP(resnet, rule=rule).attribute(x, 3)
    ref = ReferenceLRP(resnet, rule=rule).attribute(x, 3)
    assert_close_maps(exp, ref, tol=1e-4)
    with _unfolded():
        same = LRP(resnet, rule=rule).attribute(x, 3)
    assert torch.equal(same.raw_maps, ref.raw_maps)


def test_one_pass_scores_are_the_models(resnet):
    """The scores read off the explained forward are those of a clean
    forward of the model (to rounding: the folded convolutions)."""
    x = inputs(batch=2, seed=3)
    explainer = LRP(resnet)
    exp = explainer.attribute(x, 'pred')
    with torch.inference_mode():
        clean, probs = explainer.adapter.scores_and_probs(x)
    assert torch.allclose(exp.scores, clean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(exp.mean_probs, probs, rtol=1e-5, atol=1e-7)
    assert torch.equal(exp.targets, probs.argmax(1))


def test_merged_parameters_cached_until_they_change():
    """Folded weights are reused while the pair is unchanged and rebuilt
    after an in-place update of the convolution (a version change) or of
    the batch norm's statistics (training: no version change)."""
    model = tm.build(tm.i3d_cfg())
    bn, conv = next(iter(batchnorm_pairs(model).items()))
    merged = MergedParameters()
    w, b = merged(conv, bn)
    assert merged(conv, bn)[0] is w
    want = merged_parameters(conv, bn)
    assert torch.equal(w, want[0]) and torch.equal(b, want[1])
    with torch.no_grad():
        conv.weight.mul_(2)
    w2, _ = merged(conv, bn)
    assert w2 is not w and torch.equal(w2, 2 * w)
    bn.train()
    bn(torch.randn(2, bn.num_features, 2, 3, 3))  # running stats move
    bn.eval()
    w3, b3 = merged(conv, bn)
    want = merged_parameters(conv, bn)
    assert w3 is not w2 and torch.equal(w3, want[0]) and \
        torch.equal(b3, want[1])
    # an explainer's folded forward follows the change as well
    explainer = LRP(model)
    x = inputs(seed=5)
    explainer.attribute(x, 0)
    with torch.no_grad():
        model.cls_head.fc_cls.weight.mul_(-1)
        conv.weight.mul_(0.5)
    again = explainer.attribute(x, 0)
    fresh = LRP(model).attribute(x, 0)
    assert torch.equal(again.raw_maps, fresh.raw_maps)
    # through .data no version moves: clear_cache() makes it seen
    bn.weight.data.mul_(3)
    explainer.clear_cache()
    assert torch.equal(explainer.attribute(x, 0).raw_maps,
                       LRP(model).attribute(x, 0).raw_maps)


def test_relu_node_equals_gradient_hooks(resnet):
    """Folded: the ReLU after an epsilon pair scaling the gradient
    (:func:`epsilon_relu`, no hook) gives the relevance of the hook before
    the ReLU, float for float; so does a pair whose ReLU does not run in
    its ``ConvModule`` (the hook set after the forward)."""
    x = inputs(batch=2, seed=6)
    fused = LRP(resnet).attribute(x, 1)
    saved = lrp_module.relus_after
    lrp_module.relus_after = lambda pairs, model: {}
    try:
        hooked = LRP(resnet).attribute(x, 1)
    finally:
        lrp_module.relus_after = saved
    assert torch.equal(fused.raw_maps, hooked.raw_maps)
    assert torch.equal(fused.scores, hooked.scores)
    model = copy.deepcopy(resnet)
    first = model.backbone.conv1
    first.forward = lambda inp: torch.relu(type(first).forward(
        first, inp, activate=False))
    explainer = LRP(model)
    assert explainer._layout().relus.get(first.bn) is first.activate
    late = explainer.attribute(x, 1)
    assert torch.equal(late.raw_maps, hooked.raw_maps)
    assert explainer._deferred == {}


def test_one_pass_leaves_model_as_found(resnet):
    snap = ModelSnapshot(resnet)
    x = inputs(seed=4)
    LRP(resnet).attribute(x, 0)

    def boom(*args):
        raise RuntimeError('midway')
    handle = resnet.cls_head.fc_cls.register_forward_pre_hook(boom)
    try:
        with pytest.raises(RuntimeError, match='midway'):
            LRP(resnet).attribute(x, 0)
    finally:
        handle.remove()
    assert snap.changes() == []
    assert not any('forward' in vars(m) for m in resnet.modules())
