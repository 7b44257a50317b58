"""Method names and settings: one naming rule, unknown options refused."""
import pytest

from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer, method_names
from mmxai.explainers.builder import method_options, snake_case
from mmxai.registry import EXPLAINERS
from tiny_models import build, i3d_cfg


def test_naming_rule():
    assert snake_case('SaliencyTubes') == 'saliency_tubes'
    names = method_names()
    assert names['gradcam++'] == names['gradcampp'] == 'GradCAMPlusPlus'
    assert names['integrated_gradients'] == 'IntegratedGradients'


def test_unknown_option_one_line_with_did_you_mean():
    model = build(i3d_cfg())
    with pytest.raises(MMXAIError) as err:
        build_explainer('gradcam', model, weigthing='temporal')
    msg = str(err.value)
    assert "unknown option 'weigthing'; did you mean 'weighting'?" in msg
    assert 'target_layers' in msg and '\n' not in msg
    with pytest.raises(MMXAIError, match="unknown option 'n_stepz'"):
        build_explainer(dict(type='IntegratedGradients', n_stepz=4), model)


def test_every_method_lists_its_base_options():
    for cls in EXPLAINERS.module_dict.values():
        opts = method_options(cls)
        if cls.__name__ == 'CaptumExplainer':  # any Captum attribute() arg
            assert opts is None
            continue
        assert 'adapter' in opts and 'model' not in opts, cls


@pytest.mark.parametrize('layers', [3, [3], ['backbone', 4.5]])
def test_target_layers_given_as_numbers(layers):
    from mmxai.errors import LayerNotFoundError
    with pytest.raises(LayerNotFoundError, match='dotted module names'):
        build_explainer('gradcam', build(i3d_cfg()), target_layers=layers)


def test_option_of_the_wrong_kind_is_one_line():
    from mmxai.errors import MMXAIError
    model = build(i3d_cfg())
    with pytest.raises(MMXAIError, match=r"rise: option num_masks='abc' "
                       'must be a number like'):
        build_explainer('rise', model, num_masks='abc')
    build_explainer('cfp', model, theta='i3d')  # text accepted there
    build_explainer('rise', model, num_masks=8)
