"""Class names when no label map is given: the model's ``dataset_meta``,
else the config's test/val dataset (``classes``, ``metainfo`` or the
registered dataset class's ``METAINFO``), only with one name per class."""
from mmengine.config import Config
from torch import nn

import mmxai  # noqa: F401  (registers mmxai.Cholec80Dataset)
from mmxai.apis.inference import class_names_of, config_class_names
from mmxai.datasets.phase_labels import CHOLEC80_PHASES


def _cfg(dataset):
    return Config(dict(test_dataloader=dict(dataset=dataset)))


def test_config_class_names():
    assert config_class_names(_cfg(dict(
        type='mmxai.Cholec80Dataset', data_root='x'))) == list(
            CHOLEC80_PHASES)
    assert config_class_names(_cfg(dict(
        type='mmxai.PhaseVideoDataset', classes=['a', 'b']))) == ['a', 'b']
    assert config_class_names(_cfg(dict(
        type='RepeatDataset', dataset=dict(type='VideoDataset',
                                           metainfo=dict(classes=('c', )))))
    ) == ['c']
    assert config_class_names(_cfg(dict(type='VideoDataset'))) is None
    assert config_class_names(Config(dict())) is None


def test_class_names_of_falls_back_to_the_config():
    model = nn.Linear(1, 1)
    cfg = _cfg(dict(type='mmxai.Cholec80Dataset'))
    assert class_names_of(model, cfg, 7) == list(CHOLEC80_PHASES)
    assert class_names_of(model, cfg, 5) is None  # not one name per class
    model.dataset_meta = dict(classes=['x'] * 7)
    assert class_names_of(model, cfg, 7) == ['x'] * 7


def test_given_and_matched_class_names(tmp_path):
    import pytest

    from mmxai.apis.class_names import given_class_names, matched_class_names
    from mmxai.errors import InputError
    f = tmp_path / 'labels.txt'
    f.write_text('a\nb\n')
    assert given_class_names(str(f)) == ['a', 'b']
    assert given_class_names(('a', 'b')) == ['a', 'b']
    assert given_class_names(None) is None
    model = nn.Linear(1, 1)
    assert matched_class_names(['a', 'b'], model, None, 2) == ['a', 'b']
    with pytest.raises(InputError, match='2 names but the model has 3'):
        matched_class_names(['a', 'b'], model, None, 3)
    model.dataset_meta = dict(classes=['x', 'y', 'z'])
    assert matched_class_names(None, model, None, 3) == ['x', 'y', 'z']
