"""Class names of a run: the ones given (a label-map file or a list), else
the model's ``dataset_meta``, else its config's dataset (nothing is built
or read but the label map)."""
from typing import List, Optional, Sequence, Union

from torch import nn

from ..adapters import unwrap_model
from ..errors import InputError
from ..fileio import read_label_map

__all__ = ['given_class_names', 'matched_class_names', 'class_names_of',
           'config_class_names']


def given_class_names(class_names: Union[str, Sequence[str], None]
                      ) -> Optional[List[str]]:
    """The names a caller gave: a label-map file's lines (one per class),
    a list, or ``None``. Read before the model is built, so a bad file
    fails fast.

    Raises:
        InputError: the label map cannot be read.
    """
    if isinstance(class_names, str):
        return read_label_map(class_names)
    return list(class_names) if class_names else None


def matched_class_names(names: Optional[List[str]], model: nn.Module, cfg,
                        num_classes: int) -> Optional[List[str]]:
    """``names`` if given (one per class, else :class:`InputError`), else
    :func:`class_names_of` the model."""
    if names is not None:
        if len(names) != num_classes:
            raise InputError(
                f'the label map has {len(names)} names but the model has '
                f'{num_classes} classes; give one name per class, one per '
                'line')
        return names
    return class_names_of(model, cfg, num_classes)


def class_names_of(model: nn.Module, cfg=None,
                   num_classes: Optional[int] = None) -> Optional[List[str]]:
    """Class names from ``model.dataset_meta['classes']`` if present, else
    from ``cfg``'s test (then val) dataset: its ``classes``,
    ``metainfo['classes']`` or its registered class's ``METAINFO`` (e.g.
    ``mmxai.Cholec80Dataset``: the seven phases), used only when there are
    ``num_classes`` of them (when given)."""
    meta = getattr(unwrap_model(model), 'dataset_meta', None) or {}
    classes = meta.get('classes')
    if classes:
        return list(classes)
    names = None if cfg is None else config_class_names(cfg)
    if names and num_classes is not None and len(names) != num_classes:
        return None
    return names


def config_class_names(cfg) -> Optional[List[str]]:
    """Class names a config's test or val dataset declares (``None``:
    none; nothing is built or read from disk)."""
    from mmaction.registry import DATASETS
    for key in ('test_dataloader', 'val_dataloader'):
        ds = (cfg.get(key) or {}).get('dataset') if hasattr(cfg, 'get') \
            else None
        while isinstance(ds, dict) and 'dataset' in ds and \
                'classes' not in ds:  # wrappers (RepeatDataset, ...)
            ds = ds['dataset']
        if not isinstance(ds, dict):
            continue
        classes = ds.get('classes') or (ds.get('metainfo') or {}).get(
            'classes')
        if not classes and isinstance(ds.get('type'), str):
            try:
                klass = DATASETS.get(ds['type'])
            except Exception:  # noqa: B902 (an unknown scope or type)
                klass = None
            classes = (getattr(klass, 'METAINFO', None) or {}).get(
                'classes')
        if classes:
            return [str(c) for c in classes]
    return None
