"""The base explainer: one ``attribute()`` for every method."""
import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..adapters import build_adapter, unwrap_model
from ..errors import MMXAIError, TargetError
from ..utils.heap import retained_heap
from ..utils.model_state import preserved_model_state
from .attribution import Attribution
from .builder import method_name
from .explanation import NORMALIZATIONS, Explanation, normalize_maps
from .memory import (ViewCost, available_memory, default_budget, fitting,
                     format_bytes, inference_memory, is_out_of_memory,
                     memory_plan_dict, parse_memory, probe_view_cost,
                     release_memory)
from .options import check_choice
from .targets import (TargetFunction, TargetOutputAdapter, TargetSpec,
                      check_score_kind, describe_target, is_pred,
                      is_target_function, pred_basis, resolve_targets)
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
        max_views_per_pass: at most this many views (clips x crops) of a
            sample per forward: methods with :attr:`views_separable` explain
            the views in passes of this many, other methods score their
            clean views so; the result equals one pass (``None`` or 0: no
            limit but the memory budget).
        max_memory: memory budget of the explanation's forwards and
            backwards (``'4G'``, ``'512M'``, bytes; ``'toolbox'``: what the
            toolbox's own gradient-free inference of the input holds, B x V
            one-view forwards, capped by the default; default: half the
            available RAM on CPU, 80% of the free memory on CUDA): views per
            pass and batch sizes are lowered until the estimate of one pass
            fits (:mod:`.memory`, ``docs/scale.md``). On an out-of-memory
            error a pass is retried with half the views (then half the
            batch); when one view with batch 1 does not fit, one line.
        normalize: ``Explanation.maps`` from the raw maps: ``'joint'``
            (default) min-max per view over (T, H, W) together, so frames
            compare on one scale; ``'per_frame'`` min-max per frame over
            (H, W), each frame's own range (its peak is 1).
    """
    #: The method's name (CLI, outputs such as ``explanation.json``): set
    #: for each subclass by the naming rule of :mod:`.builder` unless the
    #: subclass sets it.
    name = 'base'
    #: Methods that run many forwards keep freed CPU memory in the process
    #: while they run (:func:`mmxai.utils.heap.retained_heap`), under the
    #: default budget only (:meth:`retains_heap`).
    many_forwards = False
    #: The map of one view depends only on that view once the targets are
    #: fixed, and gradients of the view-averaged score ``S = 1/V sum_v s_v``
    #: reach view ``v`` as ``1/V ds_v``: such methods run in view chunks
    #: (see ``max_views_per_pass``) with results equal to one pass.
    views_separable = False
    #: Default ``max_views_per_pass``.
    DEFAULT_VIEWS_PER_PASS = 8
    #: What a pass keeps per view (or per perturbed clip): ``'graph'``
    #: (activations for a backward) or ``'forward'`` (gradient-free).
    memory_kind = 'graph'
    #: The attribute holding the method's batch size (inputs per forward),
    #: lowered by the memory budget and on out-of-memory errors; ``None``:
    #: the method has none.
    batch_attr: Optional[str] = None
    #: Per-sample extras that add up over view chunks (summed, not joined).
    additive_extras: Tuple[str, ...] = ()
    #: ``_attribute`` returns ``Attribution.probs`` and resolves ``'pred'``
    #: with it; other methods get ``'pred'`` resolved before (several
    #: views: the arg-max of the per-view softmax averaged needs them all).
    reports_probs = False
    #: ``_attribute``'s gradient passes take one sample at a time (the
    #: memory plan counts one sample per pass, not the batch).
    per_sample_passes = False
    #: The method explains a callable target (a function of the head's
    #: output) by scoring or differentiating ``self.adapter.scores``, which
    #: :meth:`attribute` then reports as the one output of that function
    #: (:class:`.targets.TargetOutputAdapter`). Methods that read the
    #: classifier's weights for the target class instead set ``False``.
    callable_targets = True

    def __init__(self, model: nn.Module, adapter: Optional[dict] = None,
                 frames_per_view: Optional[int] = None,
                 max_views_per_pass: Optional[int] = DEFAULT_VIEWS_PER_PASS,
                 max_memory: Union[None, int, float, str] = None,
                 normalize: str = 'joint'):
        check_choice('normalize', normalize, NORMALIZATIONS)
        self.normalize = normalize
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
        #: ``max_memory='toolbox'``: the budget is what the toolbox's own
        #: gradient-free inference of the same input holds
        self.toolbox_budget = isinstance(max_memory, str) and \
            max_memory.strip().lower() == 'toolbox'
        self.max_memory = None if self.toolbox_budget else \
            parse_memory(max_memory)
        #: views per pass and batch size of the last call, the budget and
        #: the per-view estimate (:func:`.memory.memory_plan_dict`)
        self.last_memory_plan: Optional[dict] = None
        self._views_per_pass: Optional[int] = None
        self._chunk: Optional[ViewChunk] = None
        self._costs: Dict[tuple, ViewCost] = {}

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
            target: ``'pred'``, ``'gt'``, a class (output) index, B indices,
                ``'output:N'`` / ``dict(output=N)``, or a callable
                ``f(scores [N, K]) -> [N]`` of the pre-softmax scores (a
                difference of classes, a regression output): the method
                then explains ``F = 1/V sum_v f(s_v)``, the one output of
                :class:`.targets.TargetOutputAdapter` (``Explanation``:
                targets 0, scores ``[B, 1]`` = ``F``).
            data_samples: the batch's ``ActionDataSample`` (for ``'gt'``).
        Returns:
            :class:`Explanation` with maps ``[B, V, T, H, W]``;
            ``settings['target']`` describes the target
            (:func:`.targets.describe_target`), ``settings['normalize']``
            how ``maps`` were normalised.
        """
        start = time.perf_counter()
        described = describe_target(target)
        with self._target_output(target) as target:
            exp = self._attribute_target(inputs, target, data_samples, start)
        exp.settings['target'] = described
        return exp

    @contextlib.contextmanager
    def _target_output(self, target: TargetSpec) -> Iterator[TargetSpec]:
        """A callable ``target``: :attr:`adapter` is the model seen through
        it (one output, index 0) inside the block; other targets as given.
        Checks that the method can explain it (one line otherwise)."""
        if not is_target_function(target):
            try:
                outputs = int(self.adapter.num_classes)
            except Exception:  # noqa: B902 (an adapter without the count)
                outputs = None
            check_score_kind(self.name, getattr(self, 'score', None),
                             outputs)
            yield target
            return
        if not self.callable_targets:
            raise TargetError(
                f'{self.name} reads the classifier weights of one class and '
                'cannot explain a callable target: use a gradient method '
                '(gradcam, saliency, integrated_gradients, ...) or an output '
                'index')
        check_score_kind(self.name, getattr(self, 'score', None), 1)
        adapter = self.adapter
        self.adapter = TargetOutputAdapter(adapter, TargetFunction(target))
        try:
            yield 0
        finally:
            self.adapter = adapter

    def retains_heap(self, device: torch.device) -> bool:
        """Whether a call keeps freed CPU memory in the process
        (:func:`mmxai.utils.heap.retained_heap`): for many-forward methods on
        the CPU under the default budget. An explicit ``max_memory`` (a size
        or ``'toolbox'``) turns it off: the retained heap's fragmentation
        adds to the peak beyond the budget (RISE, 16 masks, TSN-R50's 10
        views of 8 x 224 x 224 under ``'toolbox'``: 2.26 GB with it, 1.44 GB
        without, the toolbox's own inference 1.42 GB; ``docs/scale.md``)."""
        bounded = self.toolbox_budget or self.max_memory is not None
        return self.many_forwards and device.type == 'cpu' and not bounded

    def _attribute_target(self, inputs: Tensor, target: TargetSpec,
                          data_samples: Optional[Sequence],
                          start: float) -> Explanation:
        """:meth:`attribute` for a target the adapter scores directly."""
        saved_batch = getattr(self, self.batch_attr) \
            if self.batch_attr else None
        with preserved_model_state(self.model), \
                retained_heap(self.retains_heap(inputs.device)), \
                _toolbox_view_chunks_lifted(
                    self.model, self.adapter, inputs,
                    self.views_separable) as toolbox_chunk:
            if any(m.training for m in self.model.modules()):
                self.model.eval()  # (a walk with __setattr__: skip if eval)
            video = self.adapter.to_video(inputs)
            try:
                self._plan(video, toolbox_chunk)
                result, probs = self._run(inputs, video, target,
                                          data_samples)
            finally:
                self.last_memory_plan = dict(
                    self.last_memory_plan or {},
                    views_per_pass=self._views_per_pass,
                    batch_size=self._batch_size())
                self._views_per_pass = None
                if self.batch_attr:  # the option as given
                    setattr(self, self.batch_attr, saved_batch)
        if not isinstance(result, Attribution):
            raise TypeError(f'{type(self).__name__}._attribute must return '
                            f'an Attribution, not {type(result).__name__}')
        raw = result.raw_maps.detach().float()
        settings = dict(self.settings())
        settings['normalize'] = self.normalize
        settings['seconds'] = round(time.perf_counter() - start, 4)
        return Explanation(
            maps=normalize_maps(raw, self.normalize), raw_maps=raw,
            targets=result.targets.detach(),
            scores=result.scores.detach().float(), method=self.name,
            settings=settings,
            layer_maps={k: v.detach().float()
                        for k, v in result.layer_maps.items()},
            extras=result.extras,
            mean_probs=None if probs is None else probs.detach().float())

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

    # ------------------------------------------------ passes and memory
    def _batch_size(self) -> Optional[int]:
        """The batch size in effect (``None``: the method has none)."""
        if self.batch_attr is None:
            return None
        value = getattr(self, self.batch_attr, None)
        return None if value is None else int(value)

    def _set_batch_size(self, value: Optional[int]) -> None:
        if self.batch_attr is not None:
            setattr(self, self.batch_attr, value)

    def _view_cost(self, video: Tensor) -> ViewCost:
        """One view's estimate, probed once per view shape and device."""
        key = (tuple(video.shape[2:]), video.dtype, str(video.device))
        if key not in self._costs:
            cost = None
            try:
                cost = probe_view_cost(self.adapter, video)
            except Exception as exc:  # noqa: B902 (only out of memory)
                if not is_out_of_memory(exc):
                    raise
            if cost is None:  # not even one view without gradients
                self._views_per_pass = 1
                self._set_batch_size(None if self._batch_size() is None
                                     else 1)
                self._shrink(video)
            self._costs[key] = cost
        return self._costs[key]

    def _plan(self, video: Tensor, toolbox_chunk: Optional[int]) -> None:
        """Views per pass and batch size from ``max_views_per_pass``, the
        toolbox's ``max_testing_views`` and the memory budget."""
        num = video.shape[1]
        cap = min(self.max_views_per_pass or num, num)
        if toolbox_chunk:  # mmxai chunks the views in the toolbox's stead
            cap = min(cap, toolbox_chunk)
        batch = self._batch_size()
        budget = self.max_memory or default_budget(video.device)
        cost = None
        # a pass holds every sample's views, or one sample's
        samples = 1 if self.per_sample_passes else video.shape[0]
        uses_views = self.views_separable or self.batch_attr is not None \
            or not self.reports_probs  # view passes of their own
        if budget is not None and ((cap > 1 and uses_views) or
                                   (batch or 1) > 1):
            cost = self._view_cost(video)
            if cost is not None and self.toolbox_budget:
                # no more than the toolbox's own inference
                budget = default_budget(video.device, inference_memory(
                    cost, min(num, toolbox_chunk or num), video.shape[0]))
        views = cap
        if cost is not None:
            unit = cost.graph if self.memory_kind == 'graph' \
                else cost.forward
            if self.views_separable:  # a pass: batch x samples x views
                views = fitting(budget, unit * (batch or 1) * samples, cap)
            else:  # clean views scored in passes, without gradients
                views = fitting(budget, cost.forward * samples, cap)
            if batch is not None and (views == 1 or
                                      not self.views_separable):
                # perturbation batches: copies of one view of one sample
                per_item = unit * samples if self.views_separable else unit
                batch = fitting(budget, per_item, batch)
        self._views_per_pass = views
        self._set_batch_size(batch)
        self.last_memory_plan = memory_plan_dict(views, batch, budget, cost)

    def _shrink(self, video: Tensor) -> None:
        """After an out-of-memory error: half the views per pass, else half
        the batch; one line when one view with batch 1 did not fit."""
        release_memory(video.device)
        batch = self._batch_size()
        if (self._views_per_pass or 1) > 1:
            self._views_per_pass = max(1, self._views_per_pass // 2)
        elif batch is not None and batch > 1:
            self._set_batch_size(max(1, batch // 2))
        else:
            cost = self._costs.get((tuple(video.shape[2:]), video.dtype,
                                    str(video.device)))
            need = format_bytes(cost and (
                cost.graph if self.memory_kind == 'graph' else cost.forward))
            free = format_bytes(available_memory(video.device))
            per = ' and batch size 1' if batch is not None else ''
            raise OutOfMemoryError(
                f'{self.name}: out of memory on {video.device} with one view '
                f'per pass{per} (one view needs about {need}, {free} free): '
                'free memory, use smaller inputs or another device')

    def _run(self, inputs: Tensor, video: Tensor, target: TargetSpec,
             data_samples: Optional[Sequence]
             ) -> Tuple[Attribution, Optional[Tensor]]:
        """The attribution and the probabilities ``[B, K]`` (``None``:
        one view, the softmax of the scores), retried smaller on
        out-of-memory errors."""
        num = video.shape[1]
        probs = None
        if not self.reports_probs and num > 1:
            scores, probs = self._view_scores(video)
            if is_pred(target):  # the arg-max needs every view
                target = resolve_targets(target, scores, data_samples,
                                         pred_basis(self.adapter, probs))
        while True:
            try:
                if self.views_separable and self._views_per_pass < num:
                    result = self._attribute_in_view_chunks(
                        video, self._views_per_pass, target, data_samples)
                else:
                    result = self._attribute(inputs, target, data_samples)
                break
            except Exception as exc:  # noqa: B902 (only out of memory)
                if not is_out_of_memory(exc):
                    raise
            self._shrink(video)  # outside the handler: its frames freed
        if result.probs is not None:
            probs = result.probs
        return result, probs

    def _view_scores(self, video: Tensor) -> Tuple[Tensor, Tensor]:
        """Gradient-free view-averaged ``scores`` and ``probs`` ``[B, K]``
        of ``video`` ``[B, V, C, T, H, W]``, at most ``_views_per_pass``
        views per forward: ``S = sum_c n_c/V S_c`` (each chunk's average
        weighed by its share of the views), the same for the per-view
        softmax averaged."""
        adapter = self.adapter
        num = video.shape[1]
        scores = probs = None
        a = 0
        while a < num:
            b = min(a + (self._views_per_pass or num), num)
            try:
                with torch.no_grad():
                    s, p = adapter.scores_and_probs(adapter.from_video(
                        video[:, a:b].contiguous()))
            except Exception as exc:  # noqa: B902 (only out of memory)
                if not is_out_of_memory(exc):
                    raise
                s = None
            if s is None:
                self._shrink(video)
                continue
            w = (b - a) / num
            scores = s * w if scores is None else scores + s * w
            probs = p * w if probs is None else probs + p * w
            a = b
        return scores, probs

    @contextlib.contextmanager
    def _in_chunk(self, video: Tensor, start: int, stop: int
                  ) -> Iterator[None]:
        """:attr:`_chunk` tells ``_attribute`` which views of the whole
        ``video`` it sees (for settings over all views, e.g. SmoothGrad's
        noise range and per-view seeds)."""
        self._chunk = ViewChunk(video, start, stop)
        try:
            yield
        finally:
            self._chunk = None

    def _attribute_in_view_chunks(self, video: Tensor, chunk: int,
                                  target: TargetSpec,
                                  data_samples: Optional[Sequence]
                                  ) -> Attribution:
        """:meth:`_attribute` over views ``[a, b)`` of ``video`` ``[B, V,
        C, T, H, W]`` in turn (at most ``chunk`` views; fewer after an
        out-of-memory error, the chunk retried). In chunk ``c`` the
        adapter's scores are scaled by ``(b-a)/V``, so every view's
        gradient is the one of a single pass and the chunks' scores add up
        to the view average ``S = sum_c (b-a)/V S_c``. For ``'pred'`` a
        gradient-free pass computes ``S`` (and the probabilities) first:
        the arg-max needs every view. The adapter's ``probs`` (the
        view-averaged per-view softmax) is scaled the same way
        (``P = sum_c (b-a)/V P_c``), per-view scores are not. Maps are
        concatenated along V; :attr:`additive_extras` are summed."""
        adapter = self.adapter
        num = video.shape[1]
        self._views_per_pass = min(chunk, self._views_per_pass or chunk)
        scores = probs = None
        if is_pred(target):  # the arg-max needs every view first
            scores, probs = self._view_scores(video)
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(adapter, probs))
        else:  # given classes: the chunks' own (scaled) scores add up to S
            targets = resolve_targets(target, video.new_zeros(
                video.shape[0], adapter.num_classes), data_samples)
        parts, sizes = [], []
        a = 0
        while a < num:
            b = min(a + self._views_per_pass, num)
            part = None
            try:
                with _scaled_scores(adapter, (b - a) / num), \
                        self._in_chunk(video, a, b):
                    part = self._attribute(
                        adapter.from_video(video[:, a:b].contiguous()),
                        targets, data_samples)
            except Exception as exc:  # noqa: B902 (only out of memory)
                if not is_out_of_memory(exc):
                    raise
            if part is None:
                self._shrink(video)
                continue
            parts.append(part)
            sizes.append(b - a)
            a = b
        if scores is None:
            scores = sum(p.scores.detach() for p in parts)
        if probs is None and all(p.probs is not None for p in parts):
            probs = sum(p.probs.detach() for p in parts)
        extras = {k: (sum(p.extras[k] for p in parts)
                      if k in self.additive_extras else
                      _cat_views([p.extras[k] for p in parts], sizes,
                                 self.name))
                  for k in parts[0].extras}
        return Attribution(
            _cat_views([p.raw_maps for p in parts], sizes, self.name),
            scores, targets,
            layer_maps=_cat_views([p.layer_maps for p in parts], sizes,
                                  self.name),
            extras=extras, probs=probs)

    # ----------------------------------------------------------- helpers
    def scores_probs_targets(self, inputs: Tensor, target: TargetSpec,
                             data_samples: Optional[Sequence]
                             ) -> Tuple[Tensor, Tensor, Tensor]:
        """One gradient-free forward: ``scores [B, K]``, ``probs [B, K]``
        (per-view softmax averaged) and ``targets [B]`` (``'pred'``: what
        ``predict`` reports as ``pred_label``)."""
        with torch.inference_mode():
            scores, probs = self.adapter.scores_and_probs(inputs)
        targets = resolve_targets(target, scores, data_samples,
                                  pred_basis(self.adapter, probs))
        return scores.clone(), probs.clone(), targets

    def scores_and_targets(self, inputs: Tensor, target: TargetSpec,
                           data_samples: Optional[Sequence]
                           ) -> Tuple[Tensor, Tensor]:
        """One gradient-free forward: ``scores [B, K]``, ``targets [B]``."""
        scores, _, targets = self.scores_probs_targets(inputs, target,
                                                       data_samples)
        return scores, targets

    def view_scorer(self, inputs: Tensor, target: TargetSpec,
                    data_samples: Optional[Sequence], score: str = 'prob'
                    ) -> Tuple[Tensor, Tensor, ViewScorer]:
        """``scores [B, K]``, ``targets [B]`` and a :class:`ViewScorer` for
        perturbation methods. The scorer's clean forwards (at most
        ``_views_per_pass`` views each) give the scores and probabilities
        (``scorer.probs``): no forward of all views at once."""
        scorer = ViewScorer(self.adapter, inputs, score,
                            views_per_pass=self._views_per_pass)
        scores = scorer.scores
        return (scores, resolve_targets(
            target, scores, data_samples,
            pred_basis(self.adapter, scorer.probs)), scorer)


class OutOfMemoryError(MMXAIError):
    """Even one view per pass (batch 1) does not fit the device."""


@dataclass(frozen=True)
class ViewChunk:
    """Views ``[start, stop)`` of the whole ``video`` ``[B, V, ...]``."""
    video: Tensor
    start: int
    stop: int


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
    both = getattr(adapter, 'scores_and_probs', None)
    if both is not None:
        adapter.scores_and_probs = lambda *args, **kw: tuple(
            t * scale for t in both(*args, **kw))
    try:
        yield
    finally:
        for attr in ('scores', 'probs', 'scores_and_probs'):
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
