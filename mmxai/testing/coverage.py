"""Run every registered method on a small toolbox model and judge the result.

Used by ``tests/test_testing/test_coverage.py`` and ``tools/coverage_matrix.py``. A cell
is ``works`` (finite maps of the input's ``[B, V, T, H, W]`` shape and the
model left as found), ``n/a`` (the method raised
:class:`~mmxai.errors.UnsupportedModelError`: its reason is kept) or
``fails`` (anything else).
"""
import inspect
import time
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .toolbox_configs import SmallModel, build_small

#: Cheap settings so that every method runs in seconds on a small model.
FAST_SETTINGS = {
    'rise': dict(num_masks=4, cells=(2, 2, 2), batch_size=4),
    'integrated_gradients': dict(n_steps=2),
    'smoothgrad': dict(n_samples=2),
    'step': dict(max_iter=2, areas=(0.1, ), core_start=1, batch_size=2),
    'cfp': dict(depth=1, max_children=2, tubes_per_level=2),
    'kernel_shap': dict(num_samples=6, n_segments=8, batch_size=6),
    'lime': dict(num_samples=6, n_segments=8, batch_size=6),
    # one forward per segment (+ one): a 2x2x2 grid (SLIC on a random
    # clip makes hundreds of supervoxels whatever n_segments asks)
    'loco': dict(segmentation='grid', grid=(2, 2, 2), batch_size=8),
    'univariate': dict(segmentation='grid', grid=(2, 2, 2), batch_size=9),
    'saliency': dict(batch_size=2),
    'occlusion': dict(batch_size=4),
    'captum': dict(algorithm='Saliency'),
    # Score-CAM family: one forward per channel mask (x noise samples)
    'scorecam': dict(top_k=4, batch_size=4),
    'sscam': dict(top_k=4, batch_size=4, num_samples=2),
    'iscam': dict(top_k=4, batch_size=4, num_samples=2),
    'ablationcam': dict(top_k=4, batch_size=4),
    'smooth_gradcam++': dict(num_samples=2),
    # temporal masks: a few Adam steps (authors: 300)
    'temporal_mask': dict(iterations=2, batch_size=2),
    # AOSA: the first-order mode (2 passes), few large occluders
    'aosa': dict(mode='approx', window=(2, 8, 8), stride=(2, 8, 8),
                 batch_size=8),
    'swag_v': dict(segmentation='grid', batch_size=2),
    # Frame Shapley: 2 segments per view, 3 subsets (exact)
    'frame_shapley': dict(segments=2, batch_size=4),
}
#: Method name order of the coverage matrix (others follow alphabetically).
CORE_METHODS = ('gradcam', 'gradcam++', 'saliency_tubes', 'attention_rollout',
                'attention_relevance')


def registered_methods() -> List[str]:
    """Method names found in ``EXPLAINERS`` now, one per method (its name,
    not its aliases; core methods first)."""
    from ..explainers import method_names
    from ..registry import EXPLAINERS
    names = [n for n, reg in method_names().items()
             if getattr(EXPLAINERS.get(reg), 'name', None) == n]
    return [m for m in CORE_METHODS if m in names] + sorted(
        m for m in names if m not in CORE_METHODS)


def _accepted(cls, settings: dict) -> dict:
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return {k: v for k, v in settings.items() if k in names}


def method_settings(method: str, cls, input_shape: Sequence[int]) -> dict:
    """Fast settings for ``method`` on an input of ``(B, V, T, H, W)``."""
    settings = dict(FAST_SETTINGS.get(method, {}))
    if method == 'occlusion':
        _, _, t, h, w = input_shape
        half = (max(t // 2, 1), max(h // 2, 1), max(w // 2, 1))
        settings.update(window=half, stride=half)
    return _accepted(cls, settings)


class ModelSnapshot:
    """Training flags, hook counts, gradients and ``requires_grad`` of a
    model, to check that an explainer left it as found."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.state = self._take()

    def _take(self):
        mods = list(self.model.named_modules())
        hooks = tuple(
            (n, len(m._forward_hooks), len(m._forward_pre_hooks),
             len(m._backward_hooks)) for n, m in mods)
        return dict(
            training=tuple(m.training for _, m in mods), hooks=hooks,
            modules=tuple(n for n, _ in mods),
            grads=tuple(p.grad is None for p in self.model.parameters()),
            requires=tuple(p.requires_grad for p in self.model.parameters()),
            average_clips=getattr(getattr(self.model, 'cls_head', None),
                                  'average_clips', None))

    def changes(self) -> List[str]:
        """Names of the aspects that differ from the snapshot."""
        now = self._take()
        return [k for k in self.state if self.state[k] != now[k]]


@dataclass
class Cell:
    """One method on one model: ``status`` works / n/a / fails."""
    status: str
    detail: str = ''
    seconds: float = 0.0
    shape: Optional[tuple] = None
    layers: List[str] = field(default_factory=list)


def run_method(small: SmallModel, method: str,
               settings: Optional[dict] = None) -> Cell:
    """Build ``method`` for ``small.model``, explain ``small.inputs`` and
    check the result (shape, finiteness, model restored)."""
    from ..explainers import build_explainer, method_names
    from ..registry import EXPLAINERS
    from ..adapters import build_adapter
    model = small.model
    with torch.no_grad():  # heads that build modules lazily (TPNHead) do
        build_adapter(model).scores(small.inputs)  # it on the first forward
    snap = ModelSnapshot(model)
    start = time.perf_counter()
    try:
        cls = EXPLAINERS.module_dict[method_names()[method]]
        expected = tuple(build_adapter(model).input_shape(small.inputs))
        kwargs = method_settings(method, cls, expected)
        kwargs.update(settings or {})
        explainer = build_explainer(method, model, **kwargs)
        exp = explainer.attribute(small.inputs, target=0)
    except UnsupportedModelError as e:
        return Cell('n/a', str(e), time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - reported as a failing cell
        return Cell('fails', f'{type(e).__name__}: {e} | '
                    + traceback.format_exc(limit=-3).replace('\n', ' '),
                    time.perf_counter() - start)
    seconds = time.perf_counter() - start
    problems = []
    if tuple(exp.maps.shape) != expected:
        problems.append(f'map shape {tuple(exp.maps.shape)} != {expected}')
    if not torch.isfinite(exp.raw_maps).all():
        problems.append('non-finite map values')
    changed = snap.changes()
    if changed:
        problems.append(f'model not restored: {", ".join(changed)}')
    layers = list(getattr(explainer, 'target_layers', []) or [])
    if problems:
        return Cell('fails', '; '.join(problems), seconds,
                    tuple(exp.maps.shape), layers)
    return Cell('works', '', seconds, tuple(exp.maps.shape), layers)


def family_row(config: str, methods: Sequence[str], size: int = 64
               ) -> Dict[str, object]:
    """Build ``config`` small and run every method: a matrix row."""
    row: Dict[str, object] = dict(config=config, cells={}, adapter='',
                                  default_layers=[], build='')
    try:
        small = build_small(config, size=size)
    except UnsupportedModelError as e:
        row['build'] = str(e)
        row['cells'] = {m: Cell('n/a', str(e)) for m in methods}
        return row
    from ..adapters import build_adapter
    adapter = build_adapter(small.model)
    row['adapter'] = type(adapter).__name__
    row['default_layers'] = adapter.default_target_layers()
    row['input'] = tuple(small.inputs.shape)
    row['model'] = type(small.model.backbone).__name__
    row['cells'] = {m: run_method(small, m) for m in methods}
    return row


__all__ = ['Cell', 'CORE_METHODS', 'FAST_SETTINGS', 'ModelSnapshot',
           'family_row', 'method_settings', 'registered_methods',
           'run_method']
