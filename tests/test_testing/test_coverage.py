"""Coverage: every MMAction2 recognition family, every applicable method.

Default run (``make test``): the class-activation and attention methods
on one family per input layout (3D, 2D, transformer, two pathways, TIN's
error) and the model-agnostic methods on I3D. ``-m sweep`` (``make
test-full``, run by CI): every family of ``representative_configs`` and the
model-agnostic methods on one model of each input layout. ``-m
full_coverage`` (also CI): every config shipped in
``mmaction/.mim/configs/recognition`` with every registered method.
"""
import pytest
import torch

import mmxai  # noqa: F401
from mmxai.errors import UnsupportedModelError
from mmxai.explainers.saliency_tubes import LINEAR_GAP_HEADS
from mmxai.testing.coverage import (CORE_METHODS, family_row,
                                  registered_methods, run_method)
from mmxai.testing.toolbox_configs import (build_small, check_buildable,
                                         list_recognition_configs,
                                         load_recognition_config,
                                         representative_configs)

REPS = representative_configs()
ATTENTION_FAMILIES = {'timesformer', 'videomae', 'videomaev2', 'swin', 'mvit',
                      'uniformer', 'uniformerv2'}
UNBUILDABLE = {'tin'}  # compiled mmcv ops
#: One model per input layout for the model-agnostic methods.
LAYOUTS = ('i3d', 'tsn', 'videomae')
SIZE = 32  # input pixels (C3D keeps 112)
#: Families of the default run; the others are in the ``sweep``.
FAST_FAMILIES = {'i3d', 'tsm', 'timesformer', 'slowfast', 'tin'}


def _families(names, fast):
    """Parameters: the ``fast`` ones plain, the others marked ``sweep``."""
    return [f if f in fast else pytest.param(f, marks=pytest.mark.sweep)
            for f in names]


def _check_row(family: str, row: dict) -> None:
    cells = row['cells']
    failing = {m: c.detail for m, c in cells.items() if c.status == 'fails'}
    assert not failing, f'{row["config"]}: {failing}'
    assert cells['gradcam'].status == 'works', cells['gradcam'].detail
    assert cells['gradcam++'].status == 'works', cells['gradcam++'].detail
    attn = 'works' if family in ATTENTION_FAMILIES else 'n/a'
    for m in ('attention_rollout', 'attention_relevance'):
        assert cells[m].status == attn, (m, cells[m].detail)


def _expects_tubes(config: str) -> bool:
    head = load_recognition_config(config).model.get('cls_head', {})
    return head.get('type') in LINEAR_GAP_HEADS and \
        head.get('spatial_type', 'avg') == 'avg'


@pytest.mark.parametrize('family', _families(sorted(REPS), FAST_FAMILIES))
def test_family_core_methods(family):
    config = REPS[family]
    if family in UNBUILDABLE:
        with pytest.raises(UnsupportedModelError, match='needs full mmcv'):
            build_small(config)
        return
    row = family_row(config, CORE_METHODS, size=SIZE)
    _check_row(family, row)
    tubes = row['cells']['saliency_tubes']
    assert (tubes.status == 'works') == _expects_tubes(config), tubes.detail
    assert row['default_layers'], 'no default target layers'


@pytest.mark.parametrize('family', _families(LAYOUTS, {'i3d'}))
def test_model_agnostic_methods(family):
    small = build_small(REPS[family], size=SIZE)
    others = [m for m in registered_methods() if m not in CORE_METHODS]
    for method in others:
        cell = run_method(small, method)
        assert cell.status != 'fails', (method, cell.detail)
    # perturbation and gradient methods never depend on the family
    for method in ('occlusion', 'rise', 'saliency', 'integrated_gradients'):
        if method in others:
            assert run_method(small, method).status == 'works', method


def test_tin_error_is_clear():
    cfg = load_recognition_config(REPS['tin'])
    with pytest.raises(UnsupportedModelError) as err:
        check_buildable(cfg.model)
    assert 'mmcv-lite is installed' in str(err.value)


def test_config_walk_finds_every_family():
    configs = list_recognition_configs()
    assert len(configs) > 100
    assert {'slowfast', 'timesformer', 'swin', 'mvit', 'uniformer',
            'uniformerv2', 'videomae', 'x3d', 'c3d', 'tsm'} <= set(REPS)
    assert not any(c.endswith('-flow.py') for c in configs)
    cfg = load_recognition_config(REPS['i3d'])
    assert cfg.model.backbone.get('pretrained') is None
    assert not cfg.model.backbone.get('pretrained2d')


@pytest.mark.full_coverage
@pytest.mark.parametrize('config', list_recognition_configs())
def test_full_walk(config):
    family = config.split('/')[0]
    try:
        check_buildable(load_recognition_config(config).model)
    except UnsupportedModelError as e:
        assert family in UNBUILDABLE or 'custom_backbones' in config \
            or 'mobileone' in config, str(e)
        return
    torch.manual_seed(0)
    row = family_row(config, registered_methods(), size=SIZE)
    _check_row(family, row)
