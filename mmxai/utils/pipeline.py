"""What a config's test pipeline says about the layout of model inputs.

A sample's input is ``crops x clips x clip_len`` frames, crops outermost
(``FormatShape`` keeps the order ``TenCrop``/``ThreeCrop`` produce). 2D
recognizers get all of them as one ``[V*T, C, H, W]`` stack, so the number
of spatial crops must come from the pipeline: :func:`pipeline_crops`.
"""
from typing import Any, List, Optional

__all__ = ['CROP_VIEWS', 'find_test_pipeline', 'pipeline_crops',
           'pipeline_crop_frames', 'loader_pipeline']

#: Spatial crops each multi-crop transform makes of one frame.
CROP_VIEWS = {'TenCrop': 10, 'ThreeCrop': 3}


def find_test_pipeline(cfg: Any) -> Optional[List[dict]]:
    """``test_pipeline``, else ``test_dataloader.dataset.pipeline``, else
    ``val_pipeline`` of ``cfg`` (a ``Config`` or dict); ``None`` if none."""
    if cfg is None:
        return None
    get = getattr(cfg, 'get', None)
    if get is None:
        return None
    pipeline = get('test_pipeline')
    if pipeline is None:
        loader = get('test_dataloader') or {}
        dataset = loader.get('dataset', {}) if hasattr(loader, 'get') else {}
        pipeline = dataset.get('pipeline') if hasattr(dataset, 'get') \
            else None
    if pipeline is None:
        pipeline = get('val_pipeline')
    return list(pipeline) if pipeline else None


def loader_pipeline(loader_cfg: Any) -> Optional[dict]:
    """``{'test_pipeline': [...]}`` of a dataloader config's dataset
    (wrappers such as ``RepeatDataset`` followed), for
    ``adapter.pipeline_config``; ``None`` if it has none."""
    ds = loader_cfg.get('dataset') if hasattr(loader_cfg, 'get') else None
    while hasattr(ds, 'get') and hasattr(ds.get('dataset'), 'get'):
        ds = ds['dataset']
    pipeline = ds.get('pipeline') if hasattr(ds, 'get') else None
    return dict(test_pipeline=list(pipeline)) if pipeline else None


def _type_name(t: Any) -> str:
    kind = t.get('type') if hasattr(t, 'get') else type(t).__name__
    name = kind if isinstance(kind, str) else getattr(kind, '__name__',
                                                      str(kind))
    return name.split('.')[-1]


def pipeline_crops(pipeline: Optional[List[Any]]) -> int:
    """Spatial crops per decoded frame made by ``pipeline`` (transform
    configs or built transforms): the product of :data:`CROP_VIEWS` over
    its transforms, 1 for single-crop pipelines (or none)."""
    crops = 1
    for t in pipeline or ():
        crops *= CROP_VIEWS.get(_type_name(t), 1)
    return crops


def _arg(t: Any, key: str, default: Any = None) -> Any:
    if hasattr(t, 'get'):
        return t.get(key, default)
    return getattr(t, key, default)


def pipeline_crop_frames(pipeline: Optional[List[Any]]) -> Optional[int]:
    """Frames of one spatial crop that ``pipeline``'s frame sampler yields
    in test mode (``clips x clip_len``): ``SampleFrames`` (x2 with
    ``twice_sample``), ``DenseSampleFrames`` (x ``num_sample_positions``),
    ``UniformSample``; ``None`` for other samplers or none."""
    for t in pipeline or ():
        name = _type_name(t)
        if name not in ('SampleFrames', 'DenseSampleFrames',
                        'UniformSample'):
            continue
        try:
            frames = int(_arg(t, 'clip_len', 1)) * int(_arg(t, 'num_clips',
                                                           1))
            if name == 'SampleFrames' and _arg(t, 'twice_sample', False):
                frames *= 2
            if name == 'DenseSampleFrames':
                frames *= int(_arg(t, 'num_sample_positions', 10))
        except (TypeError, ValueError):
            return None
        return frames if frames > 0 else None
    return None
