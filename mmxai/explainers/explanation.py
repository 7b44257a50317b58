"""The result of an explanation."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from torch import Tensor

from ..errors import MMXAIError
from ..utils.normalize import minmax_normalize

#: How ``Explanation.maps`` come from the raw maps ``[B, V, T, H, W]``:
#: ``'joint'`` min-max per view over (T, H, W) together (frames compare on
#: one scale), ``'per_frame'`` min-max per frame over (H, W).
NORMALIZATIONS = ('joint', 'per_frame')


def normalize_maps(raw: Tensor, mode: str = 'joint') -> Tensor:
    """``[B, V, T, H, W]`` raw maps -> [0, 1] by ``mode``
    (:data:`NORMALIZATIONS`): ``(m - min) / (max - min)`` over each view's
    (T, H, W) (``'joint'``) or each frame's (H, W) (``'per_frame'``, every
    frame that is not constant peaks at 1; relative temporal importance is
    lost). Constant ranges give 0."""
    if mode not in NORMALIZATIONS:
        raise MMXAIError(f"unknown normalize '{mode}': use one of "
                         f"{', '.join(NORMALIZATIONS)}")
    return minmax_normalize(raw, dims=3 if mode == 'joint' else 2)


@dataclass
class Explanation:
    """Maps for one target class per sample, with what produced them.

    Attributes:
        maps: ``[B, V, T, H, W]`` in [0, 1], min-max normalised per view
            jointly over (T, H, W), so relative temporal importance is kept
            (default; ``settings['normalize']``: ``'per_frame'`` normalises
            each frame over (H, W), see :func:`normalize_maps`).
        raw_maps: ``[B, V, T, H, W]``, unnormalised (the method's own units).
        targets: ``[B]`` explained class (output index) per sample; 0 for a
            callable target (``settings['target']``: ``'callable:<name>'``).
        scores: ``[B, K]`` pre-softmax scores of the model (views averaged);
            for a callable target ``f``, ``[B, 1]``: ``F = 1/V sum_v
            f(s_v)``, the value explained.
        method: registered name of the method.
        settings: the method's settings (JSON-serialisable).
        layer_maps: raw maps per target layer / pathway, each
            ``[B, V, T_l, H, W]`` on that layer's own input time base.
        extras: method-specific results (e.g. a class feature graph).
        mean_probs: ``[B, K]`` each view's softmax averaged over views:
            ``predict``'s ``pred_score`` with ``average_clips='prob'``
            (``None``: the softmax of ``scores``, the same for one view).
    """
    maps: Tensor
    raw_maps: Tensor
    targets: Tensor
    scores: Tensor
    method: str
    settings: Dict[str, Any] = field(default_factory=dict)
    layer_maps: Dict[str, Tensor] = field(default_factory=dict)
    extras: Dict[str, Any] = field(default_factory=dict)
    mean_probs: Optional[Tensor] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.maps.shape)

    @property
    def probs(self) -> Tensor:
        """``[B, K]`` class probabilities as ``predict`` reports them with
        ``average_clips='prob'``: each view's softmax averaged over the
        views (:attr:`mean_probs`); with one view the softmax of
        ``scores``. Not the softmax of the view-averaged ``scores``."""
        if self.mean_probs is not None:
            return self.mean_probs.float()
        return self.scores.float().softmax(-1)

    @property
    def target_spec(self) -> str:
        """The target as asked for (``'pred'``, ``'gt'``, ``'output:3'``,
        ``'callable:<name>'``); ``''`` when not recorded."""
        return str(self.settings.get('target', ''))

    @property
    def explains_function(self) -> bool:
        """The maps explain a callable of the scores (``scores`` is its
        value ``[B, 1]``), not a class."""
        return self.target_spec.startswith('callable:')

    def normalized(self, mode: str = 'joint') -> 'Explanation':
        """A copy with :attr:`maps` normalised from :attr:`raw_maps` by
        ``mode`` (:func:`normalize_maps`), e.g. ``'per_frame'``."""
        out = self[:]
        out.maps = normalize_maps(self.raw_maps, mode)
        out.settings['normalize'] = mode
        return out

    @property
    def target_scores(self) -> Tensor:
        """``[B]`` pre-softmax score of each sample's target class."""
        return self.scores.gather(1, self.targets.view(-1, 1)).view(-1)

    def topk(self, k: int = 5) -> List[List[Tuple[int, float]]]:
        """Per sample, the ``k`` most probable ``(class, probability)``."""
        probs = self.probs
        k = min(k, probs.shape[-1])
        val, idx = probs.topk(k, dim=-1)
        return [[(int(i), float(p)) for i, p in zip(ii, vv)]
                for ii, vv in zip(idx.tolist(), val.tolist())]

    def temporal_importance(self, raw: bool = False) -> Tensor:
        """``[B, V, T]`` share of positive map mass per frame (sums to 1)."""
        m = (self.raw_maps if raw else self.maps).clamp_min(0)
        mass = m.flatten(3).sum(-1)
        return mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)

    def cpu(self) -> 'Explanation':
        def mv(x):
            return x.detach().cpu() if isinstance(x, Tensor) else x
        return Explanation(
            maps=mv(self.maps), raw_maps=mv(self.raw_maps),
            targets=mv(self.targets), scores=mv(self.scores),
            method=self.method, settings=dict(self.settings),
            layer_maps={k: mv(v) for k, v in self.layer_maps.items()},
            extras={k: mv(v) for k, v in self.extras.items()},
            mean_probs=mv(self.mean_probs))

    def to_numpy(self) -> Dict[str, np.ndarray]:
        """Arrays for ``np.savez``: maps, raw_maps, targets, scores, layers."""
        out = {'maps': self.maps, 'raw_maps': self.raw_maps,
               'targets': self.targets, 'scores': self.scores}
        for name, m in self.layer_maps.items():
            out['layer_maps/' + name] = m
        return {k: v.detach().float().cpu().numpy() if v.is_floating_point()
                else v.detach().cpu().numpy() for k, v in out.items()}

    def __getitem__(self, index) -> 'Explanation':
        """Select samples: ``exp[0]`` keeps a batch dimension of one."""
        if isinstance(index, int):
            index = slice(index, index + 1)

        def sel(x):
            return x[index] if isinstance(x, Tensor) else x
        return Explanation(
            maps=sel(self.maps), raw_maps=sel(self.raw_maps),
            targets=sel(self.targets), scores=sel(self.scores),
            method=self.method, settings=dict(self.settings),
            layer_maps={k: sel(v) for k, v in self.layer_maps.items()},
            extras=dict(self.extras), mean_probs=sel(self.mean_probs))

    def summary(self, class_names: Optional[List[str]] = None) -> dict:
        """JSON-ready description of sample 0 (method, target, top-5...)."""
        def label(c):
            return class_names[c] if class_names and c < len(class_names) \
                else str(c)
        t = int(self.targets[0])
        top = self.topk(5)[0]
        target = {'class': t, 'label': label(t),
                  'score': float(self.target_scores[0]),
                  'prob': float(self.probs[0, t])}
        if self.target_spec:
            target['spec'] = self.target_spec
        if self.explains_function:  # not a class: no label, no probability
            target.update(label=self.target_spec, prob=None)
        return {
            'method': self.method,
            'settings': self.settings,
            'target': target,
            'top5': [{'class': c, 'label': label(c), 'prob': p}
                     for c, p in top],
            'map_shape': list(self.maps.shape),
        }
