"""The base explainer: one ``attribute()`` for every method."""
import contextlib
import copy
import time
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..adapters import build_adapter, unwrap_model
from ..errors import MMXAIError
from ..utils.heap import retained_heap
from ..utils.model_state import preserved_model_state
from ..utils.normalize import minmax_normalize
from .attribution import Attribution
from .builder import method_name
from .explanation import Explanation
from .targets import TargetSpec, resolve_targets
from .view_scorer import ViewScorer


class BaseExplainer:
    """Explains an MMAction2 recognizer's decisions.

    Subclasses implement :meth:`_attribute`, returning an
    :class:`Attribution`. The public entry points are
    :meth:`attribute` (preprocessed inputs, Captum style) and :meth:`explain`
    (a data batch as the toolbox's dataloader or pipeline produces it).

    Every call runs the model in eval mode and leaves it as found (mode,
    hooks, head settings, gradients), also when it fails.

    Args:
        model: a built MMAction2 recognizer (wrappers are stripped).
        adapter: optional adapter config (default: chosen from the model).
        frames_per_view: 2D recognizers only: frames of one view.
        max_views_per_pass: methods with :attr:`views_separable` explain
            the views (clips x crops) of a sample in passes of at most this
            many, so memory does not grow with the number of views; the
            result equals one pass (``None`` or 0: one pass).
    """
    #: The method's name (CLI, outputs such as ``explanation.json``): set
    #: for each subclass by the naming rule of :mod:`.builder` unless the
    #: subclass sets it.
    name = 'base'
    #: Methods that run many forwards keep freed CPU memory in the process
    #: while they run (:func:`mmxai.utils.heap.retained_heap`).
    many_forwards = False
    #: The map of one view depends only on that view once the targets are
    #: fixed, and gradients of the view-averaged score ``S = 1/V sum_v s_v``
    #: reach view ``v`` as ``1/V ds_v``: such methods run in view chunks
    #: (see ``max_views_per_pass``) with results equal to one pass.
    views_separable = False
    #: Default ``max_views_per_pass`` of separable methods.
    DEFAULT_VIEWS_PER_PASS = 8

    def __init__(self, model: nn.Module, adapter: Optional[dict] = None,
                 frames_per_view: Optional[int] = None,
                 max_views_per_pass: Optional[int] = DEFAULT_VIEWS_PER_PASS):
        self.model = unwrap_model(model)
        kwargs = {} if frames_per_view is None else dict(
            frames_per_view=frames_per_view)
        self.adapter = build_adapter(self.model, adapter, **kwargs)
        if max_views_per_pass is not None and (
                not isinstance(max_views_per_pass, int) or
                isinstance(max_views_per_pass, bool) or
                max_views_per_pass < 0):
            raise MMXAIError('max_views_per_pass must be a whole number >= 1 '
                             f'(0 or None: one pass), got '
                             f'{max_views_per_pass!r}')
        self.max_views_per_pass = max_views_per_pass or None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if 'name' not in cls.__dict__:
            cls.name = method_name(cls.__name__)

    # ----------------------------------------------------------- public
    def settings(self) -> Dict[str, Any]:
        """The method's settings, JSON-serialisable (for outputs)."""
        return {}

    def attribute(self, inputs: Tensor, target: TargetSpec = 'pred',
                  data_samples: Optional[Sequence] = None) -> Explanation:
        """Explain preprocessed ``inputs`` (the data preprocessor's output).

        Args:
            inputs: ``[B, V, C, T, H, W]`` (3D) or ``[B, V*T, C, H, W]`` (2D).
            target: ``'pred'``, ``'gt'``, a class index, or B indices.
            data_samples: the batch's ``ActionDataSample`` (for ``'gt'``).
        Returns:
            :class:`Explanation` with maps ``[B, V, T, H, W]``.
        """
        start = time.perf_counter()
        on_cpu = inputs.device.type == 'cpu'
        with preserved_model_state(self.model), \
                retained_heap(self.many_forwards and on_cpu), \
                _toolbox_view_chunks_lifted(
                    self.model, self.adapter, inputs,
                    self.views_separable) as toolbox_chunk:
            self.model.eval()
            chunk = self.max_views_per_pass if self.views_separable else None
            if toolbox_chunk:  # mmxai chunks the views in its stead
                chunk = min(chunk or toolbox_chunk, toolbox_chunk)
            video = self.adapter.to_video(inputs) if chunk else None
            if chunk and video.shape[1] > chunk:
                result = self._attribute_in_view_chunks(
                    video, chunk, target, data_samples)
            else:
                result = self._attribute(inputs, target, data_samples)
        if not isinstance(result, Attribution):
            raise TypeError(f'{type(self).__name__}._attribute must return '
                            f'an Attribution, not {type(result).__name__}')
        raw = result.raw_maps.detach().float()
        settings = dict(self.settings())
        settings['seconds'] = round(time.perf_counter() - start, 4)
        return Explanation(
            maps=minmax_normalize(raw), raw_maps=raw,
            targets=result.targets.detach(),
            scores=result.scores.detach().float(), method=self.name,
            settings=settings,
            layer_maps={k: v.detach().float()
                        for k, v in result.layer_maps.items()},
            extras=result.extras)

    def explain(self, data: dict, target: TargetSpec = 'pred') -> Explanation:
        """Explain a data batch (``dict(inputs=[...], data_samples=[...])``
        as produced by the toolbox's dataloader / ``pseudo_collate``)."""
        with torch.no_grad():
            data = self.model.data_preprocessor(data, False)
        return self.attribute(data['inputs'], target,
                              data.get('data_samples'))

    __call__ = attribute

    # ------------------------------------------------------- to implement
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        """Raw maps ``[B, V, T, H, W]``, scores ``[B, K]``, targets ``[B]``
        (and layer maps, extras) for ``inputs``. Called in eval mode inside
        ``preserved_model_state``."""
        raise NotImplementedError

    def _attribute_in_view_chunks(self, video: Tensor, chunk: int,
                                  target: TargetSpec,
                                  data_samples: Optional[Sequence]
                                  ) -> Attribution:
        """:meth:`_attribute` over views ``[a, b)`` of ``video`` ``[B, V,
        C, T, H, W]`` in turn. In chunk ``c`` the adapter's scores are
        scaled by ``(b-a)/V``, so every view's gradient is the one of a
        single pass and the chunks' scores add up to the view average
        ``S = sum_c (b-a)/V S_c``. For ``'pred'`` a gradient-free pass
        computes ``S`` first (the arg-max needs every view). The adapter's
        ``probs`` (the view-averaged per-view softmax) is scaled the same
        way (``P = sum_c (b-a)/V P_c``), per-view scores are not. Maps are
        concatenated along V."""
        adapter = self.adapter
        num = video.shape[1]
        bounds = [(a, min(a + chunk, num)) for a in range(0, num, chunk)]
        scores = None
        if target is None or (isinstance(target, str) and target == 'pred'):
            with torch.no_grad():  # the arg-max needs every view first
                scores = sum(adapter.scores(adapter.from_video(
                    video[:, a:b].contiguous())) * ((b - a) / num)
                    for a, b in bounds)
            targets = resolve_targets(target, scores, data_samples)
        else:  # given classes: the chunks' own (scaled) scores add up to S
            targets = resolve_targets(target, video.new_zeros(
                video.shape[0], adapter.num_classes), data_samples)
        parts = []
        for a, b in bounds:
            with _scaled_scores(adapter, (b - a) / num):
                parts.append(self._attribute(
                    adapter.from_video(video[:, a:b].contiguous()), targets,
                    data_samples))
        sizes = [b - a for a, b in bounds]
        if scores is None:
            scores = sum(p.scores.detach() for p in parts)
        return Attribution(
            _cat_views([p.raw_maps for p in parts], sizes, self.name),
            scores, targets,
            layer_maps=_cat_views([p.layer_maps for p in parts], sizes,
                                  self.name),
            extras=_cat_views([p.extras for p in parts], sizes, self.name))

    # ----------------------------------------------------------- helpers
    def scores_and_targets(self, inputs: Tensor, target: TargetSpec,
                           data_samples: Optional[Sequence]
                           ) -> Tuple[Tensor, Tensor]:
        """One gradient-free forward: ``scores [B, K]``, ``targets [B]``."""
        with torch.inference_mode():
            scores = self.adapter.scores(inputs)
        return scores, resolve_targets(target, scores, data_samples)

    def view_scorer(self, inputs: Tensor, target: TargetSpec,
                    data_samples: Optional[Sequence], score: str = 'prob'
                    ) -> Tuple[Tensor, Tensor, ViewScorer]:
        """``scores [B, K]``, ``targets [B]`` and a :class:`ViewScorer` for
        perturbation methods. With one view the scorer's clean forward is
        the model's score, so no separate forward is run."""
        scorer = ViewScorer(self.adapter, inputs, score)
        if scorer.num_views == 1:
            scores = scorer.view_logits[:, 0].detach().clone()
            return (scores, resolve_targets(target, scores, data_samples),
                    scorer)
        scores, targets = self.scores_and_targets(inputs, target,
                                                  data_samples)
        return scores, targets, scorer


@contextlib.contextmanager
def _scaled_scores(adapter, scale: float) -> Iterator[None]:
    """The adapter's view-averaged ``scores`` and ``probs`` of one view
    chunk scaled by its share of the views (per-view scores unscaled);
    the class's methods again on exit."""
    unscaled = adapter.scores
    unscaled_probs = getattr(adapter, 'probs', None)

    def scores(inputs, per_view=False, **kw):
        out = unscaled(inputs, per_view=per_view, **kw)
        return out if per_view else out * scale

    adapter.scores = scores
    if unscaled_probs is not None:
        # the class's probs calls the (scaled) scores per view: unscaled
        adapter.probs = lambda *args, **kw: unscaled_probs(*args, **kw) * scale
    try:
        yield
    finally:
        for attr in ('scores', 'probs'):
            vars(adapter).pop(attr, None)


@contextlib.contextmanager
def _toolbox_view_chunks_lifted(model: nn.Module, adapter, inputs: Tensor,
                                enabled: bool) -> Iterator[Optional[int]]:
    """Lift ``model.test_cfg.max_testing_views`` inside the block when
    ``enabled`` (view-separable methods) and yield the number of views it
    allows per forward (``None`` when it is not set).

    MMAction2 then runs the backbone on chunks of views and concatenates
    their features: layer outputs captured per chunk are not on the
    graph of the score (Grad-CAM got no gradient). mmxai chunks the views
    itself instead, with at most that many views of a sample per pass.
    The model's own ``test_cfg`` object is put back on exit, also on
    failure."""
    cfg = getattr(model, 'test_cfg', None)
    limit = cfg.get('max_testing_views', False) \
        if enabled and hasattr(cfg, 'get') else False
    if not limit:
        yield None
        return
    lifted = copy.copy(cfg)
    lifted['max_testing_views'] = False
    # the toolbox counts rows of its flattened batch: 2D models' frames
    _, views, _, _, _ = adapter.input_shape(inputs)
    rows = inputs.shape[1] // views if inputs.shape[1] % views == 0 else 1
    model.test_cfg = lifted
    try:
        yield max(1, int(limit) // max(1, rows))
    finally:
        model.test_cfg = cfg


def _cat_views(values: list, sizes: Sequence[int], name: str):
    """Join per-chunk results along the view axis (dim 1): tensors
    ``[B, V_c, ...]``, or dicts of them."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _cat_views([v[k] for v in values], sizes, name)
                for k in first}
    if isinstance(first, Tensor) and first.dim() > 1 and all(
            v.shape[1] == n for v, n in zip(values, sizes)):
        return torch.cat(values, 1)
    raise MMXAIError(f'{name}: a per-sample result cannot be split by view; '
                     'explain in one pass (max_views_per_pass=None)')
