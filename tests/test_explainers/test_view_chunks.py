"""Views explained in chunks (``max_views_per_pass``) equal one pass."""
import pytest
import torch

from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsm_cfg

CASES = [
    ('gradcam', dict(weighting='global')),
    ('gradcam', dict(weighting='temporal')),
    ('gradcam++', dict(weighting='global')),
    ('saliency_tubes', {}),
]


@pytest.mark.parametrize('two_d', [False, True])
@pytest.mark.parametrize('method,opts', CASES)
def test_chunked_views_equal_one_pass(method, opts, two_d):
    model = build(tsm_cfg() if two_d else i3d_cfg(), seed=1)
    data = preprocess(model, clip_batch(batch=2, views=5, two_d=two_d,
                                        seed=3, labels=[1, 3]))
    x = data['inputs']
    one = build_explainer(method, model, max_views_per_pass=None, **opts)
    chunked = build_explainer(method, model, max_views_per_pass=2, **opts)
    for target in ('pred', 'gt'):
        a = one.attribute(x, target, data['data_samples'])
        b = chunked.attribute(x, target, data['data_samples'])
        assert a.maps.shape == b.maps.shape == (2, 5, 8, 32, 32)
        assert torch.equal(a.targets, b.targets)
        torch.testing.assert_close(b.scores, a.scores, rtol=1e-5, atol=1e-5)
        scale = a.raw_maps.abs().max()
        torch.testing.assert_close(b.raw_maps / scale, a.raw_maps / scale,
                                   rtol=1e-4, atol=1e-5)
        assert set(a.layer_maps) == set(b.layer_maps)
    # the adapter's scores are the class's method again
    assert 'scores' not in vars(chunked.adapter)


def test_max_views_per_pass_is_checked():
    model = build(i3d_cfg())
    with pytest.raises(MMXAIError, match='max_views_per_pass'):
        build_explainer('gradcam', model, max_views_per_pass=-1)
    with pytest.raises(MMXAIError, match='max_views_per_pass'):
        build_explainer('gradcam', model, max_views_per_pass='4')


@pytest.mark.parametrize('method,opts', CASES)
def test_toolbox_max_testing_views_equals_without(method, opts):
    """``test_cfg.max_testing_views`` (the toolbox runs the backbone on
    chunks of views): the explainer's result is the one without it, the
    toolbox's setting bounds mmxai's own view passes, and the model's
    ``test_cfg`` is put back."""
    model = build(i3d_cfg(), seed=1)
    data = preprocess(model, clip_batch(batch=2, views=3, seed=3,
                                        labels=[1, 3]))
    x = data['inputs']
    for target in ('pred', 'gt'):
        model.test_cfg = None
        ref = build_explainer(method, model, **opts).attribute(
            x, target, data['data_samples'])
        cfg = dict(max_testing_views=1)
        model.test_cfg = cfg
        explainer = build_explainer(method, model, **opts)
        calls = []
        explainer._attribute = (lambda *a, _f=explainer._attribute:
                                calls.append(1) or _f(*a))
        exp = explainer.attribute(x, target, data['data_samples'])
        assert model.test_cfg is cfg and cfg == dict(max_testing_views=1)
        assert len(calls) == 3  # one view per pass, as the toolbox's cfg
        assert torch.equal(exp.targets, ref.targets)
        torch.testing.assert_close(exp.scores, ref.scores, rtol=1e-5,
                                   atol=1e-5)
        scale = ref.raw_maps.abs().max()
        assert scale > 0
        torch.testing.assert_close(exp.raw_maps / scale, ref.raw_maps / scale,
                                   rtol=1e-4, atol=1e-5)
    model.test_cfg = None


def test_toolbox_max_testing_views_restored_on_failure():
    model = build(i3d_cfg())
    x = preprocess(model, clip_batch(views=2))['inputs']
    cfg = dict(max_testing_views=1, fcn_test=False)
    model.test_cfg = cfg
    with pytest.raises(MMXAIError):
        build_explainer('gradcam', model).attribute(x, target=99)
    assert model.test_cfg is cfg and cfg['max_testing_views'] == 1
    # methods that do not chunk views (perturbation: no graph) leave the
    # toolbox's chunking alone; input-gradient methods chunk them
    for method, opts in (('occlusion', dict(window=(8, 32, 32),
                                            stride=(8, 32, 32))),
                         ('saliency', {})):
        seen = []
        hook = model.backbone.register_forward_pre_hook(
            lambda m, args: seen.append(args[0].shape[0]))
        try:
            build_explainer(method, model, progress=False,
                            **opts).attribute(x, 0)
        finally:
            hook.remove()
        assert seen and max(seen) == 1
        assert model.test_cfg is cfg and cfg['max_testing_views'] == 1
