"""ModelRandomization metric: the sanity check of the hook's explainer on the
test set (Adebayo et al. 2018), on one explained batch of a tiny I3D."""
import pytest
import torch

from tiny_models import build, clip_batch, i3d_cfg, preprocess
from mmxai.errors import MMXAIError
from mmxai.evaluation import (ExplainedBatch, ModelRandomization,
                              cascading_randomization, default_cascade)
from mmxai.explainers import Attribution, BaseExplainer, build_explainer
from mmxai.registry import EXPLAINERS


class InputMagnitude(BaseExplainer):
    """A map that ignores the model: the clip's per-voxel magnitude (an
    edge-detector-like explanation, which the check must fail)."""
    name = 'input_magnitude'

    def _attribute(self, inputs, target, data_samples):
        scores, targets = self.scores_and_targets(inputs, target,
                                                  data_samples)
        raw = inputs.abs().sum(2)  # [B, V, C, T, H, W] -> [B, V, T, H, W]
        return Attribution(raw, scores, targets)


@pytest.fixture
def input_magnitude():
    """Registered for this test only (other tests walk every method)."""
    name = 'MMXAITestInputMagnitude'
    EXPLAINERS.register_module(name=name, force=True, module=InputMagnitude)
    yield name
    EXPLAINERS._module_dict.pop(name, None)


@pytest.fixture(scope='module')
def setup():
    model = build(i3d_cfg())
    data = preprocess(model, clip_batch(batch=3, views=1, seed=5,
                                        labels=[0, 1, 2]))
    return model, data['inputs'], data['data_samples']


def _run(model, inputs, samples, cfg, ranks=None, **kwargs):
    explainer = build_explainer(cfg, model)
    exp = explainer.attribute(inputs, 'gt', samples)
    n = len(inputs)
    batch = ExplainedBatch(positions=list(range(n)),
                           indices=list(range(10, 10 + n)),
                           inputs=inputs, data_samples=samples,
                           explanation=exp, adapter=explainer.adapter,
                           explainer_cfg=cfg, ranks=ranks)

    metric = ModelRandomization(keep_steps=True, **kwargs)
    metric.feed(batch)
    metric.process({}, [])
    scored = [r['index'] for r in metric.results]
    return metric.evaluate(3), exp, scored


def test_default_cascade_is_top_down():
    model = build(i3d_cfg())
    assert default_cascade(model) == [
        'cls_head', 'backbone.layer4', 'backbone.layer3', 'backbone.layer2',
        'backbone.layer1', 'backbone.conv1']
    with pytest.raises(MMXAIError, match='pass cascade'):
        default_cascade(torch.nn.Linear(2, 2))


def test_gradcam_passes_and_model_is_untouched(setup):
    model, inputs, samples = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res, exp, _ = _run(model, inputs, samples, dict(type='GradCAM'))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.training
    # the same numbers as the Runner-free function, same targets and seed
    cascade = default_cascade(model)

    def explain(mdl):
        return build_explainer('gradcam', mdl).attribute(
            inputs, exp.targets.tolist(), samples).raw_maps
    ref = cascading_randomization(explain, model, cascade, seed=0,
                                  reference=exp.raw_maps)
    assert res['mmxai/randomization_curve'] == pytest.approx(
        [s['spearman'] for s in ref], abs=1e-4)
    assert res['mmxai/randomization_spearman'] == pytest.approx(
        ref[-1]['spearman'], abs=1e-6)
    assert res['mmxai/randomization_spearman'] < 0.5
    assert res['mmxai/randomization_passed'] == 1.0


def test_model_independent_map_fails(setup, input_magnitude):
    model, inputs, samples = setup
    res, _, _ = _run(model, inputs, samples, dict(type=input_magnitude),
                  cascade=['cls_head', 'backbone'])
    assert res['mmxai/randomization_spearman'] == pytest.approx(1.0)
    assert res['mmxai/randomization_passed'] == 0.0
    assert len(res['mmxai/randomization_curve']) == 2


def test_max_samples_and_bad_options(setup):
    model, inputs, samples = setup
    res, _, scored = _run(model, inputs, samples, dict(type='GradCAM'),
                          max_samples=1, cascade=['cls_head'])
    assert len(res['mmxai/randomization_curve']) == 1
    assert scored == [10]
    # with the hook's ranks (dataset order, any world size): the samples
    # ranked below max_samples, wherever they sit in the batch
    one, _, scored = _run(model, inputs, samples, dict(type='GradCAM'),
                          ranks=[7, 1, 3], max_samples=4,
                          cascade=['cls_head'])
    assert scored == [11, 12]
    ref, _, _ = _run(model, inputs[1:], samples[1:], dict(type='GradCAM'),
                     cascade=['cls_head'])
    assert one['mmxai/randomization_spearman'] == pytest.approx(
        ref['mmxai/randomization_spearman'], abs=1e-6)
    with pytest.raises(MMXAIError):
        ModelRandomization(cascade=[])
    with pytest.raises(MMXAIError):
        ModelRandomization(max_samples=0)
    with pytest.raises(MMXAIError, match='backbone.layer9'):
        _run(model, inputs, samples, dict(type='GradCAM'),
             cascade=['backbone.layer9'])


def test_hook_ranks_samples_by_dataset_index():
    from mmxai.engine import ExplainHook
    assert [ExplainHook(interval=3).rank(i) for i in (0, 3, 9)] == [0, 1, 3]
    hook = ExplainHook(indices=[40, 7, 12])
    assert [hook.rank(i) for i in (7, 12, 40)] == [0, 1, 2]


class _Probed(torch.nn.Module):
    """A recognizer-shaped model whose backbone has a used stage ``a``, a
    ``ModuleList`` ``blocks`` (never called itself), a stage ``late`` that
    runs but is discarded and a stage ``never`` that never runs; the
    registration order (never, late, blocks, a) is not the run order."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.never = torch.nn.Linear(4, 4)
        self.backbone.late = torch.nn.Linear(4, 4)
        self.backbone.blocks = torch.nn.ModuleList(
            [torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)])
        self.backbone.a = torch.nn.Linear(4, 4)
        self.cls_head = torch.nn.Linear(4, 2)

    def extract_feat(self, inputs, test_mode=False):
        x = self.backbone.a(inputs.reshape(-1, 4))
        for blk in self.backbone.blocks:
            x = blk(x)
        self.backbone.late(x)  # computed, then dropped
        return x


def test_default_cascade_follows_what_runs_and_matters():
    model = _Probed()
    for p in model.parameters():  # frozen weights: the probe still works
        p.requires_grad_(False)
    assert default_cascade(model) == [
        'cls_head', 'backbone.a', 'backbone.blocks', 'backbone.late',
        'backbone.never']
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks)
             for m in model.modules()]
    assert default_cascade(model, torch.randn(1, 1, 4)) == [
        'cls_head', 'backbone.blocks', 'backbone.a']
    with torch.no_grad():  # as in the toolbox's test loop
        assert default_cascade(model, torch.randn(1, 1, 4)) == [
            'cls_head', 'backbone.blocks', 'backbone.a']
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks)
            for m in model.modules()] == hooks
    assert all(p.grad is None and not p.requires_grad
               for p in model.parameters())


def test_default_cascade_drops_a_stage_the_backbone_discards():
    """A real ResNet3d whose out_indices stop at layer3 still runs layer4:
    randomising it would change nothing, so the probe leaves it out."""
    from mmxai.testing.toolbox_configs import build_small, \
        representative_configs
    small = build_small(representative_configs()['i3d'])
    model = small.model
    ran = default_cascade(model, small.inputs)
    assert ran == default_cascade(model)  # every stage shapes the output
    model.backbone.out_indices = (2,)
    try:
        with torch.no_grad():  # the head is not part of the probe
            feats = model.extract_feat(small.inputs, test_mode=True)[0]
        assert feats.shape[1] == model.backbone.layer3[-1].conv3.conv \
            .out_channels
        assert default_cascade(model, small.inputs) == [
            n for n in ran if n != 'backbone.layer4']
    finally:
        model.backbone.out_indices = (3,)
