"""Captum attribution algorithms on any MMAction2 recognizer."""
import contextlib
import inspect
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..utils.layers import get_layer
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import REDUCTIONS, frozen_parameters, reduce_channels
from .memory import fitting
from .options import SCORES, check_choice
from .targets import TargetSpec


class _ScoreModule(nn.Module):
    """The score function as an ``nn.Module`` holding the recognizer: the
    algorithms that hook the model's modules (``DeepLift``,
    ``GuidedBackprop``, ``Deconvolution``, ``GuidedGradCam``, ...) take a
    module, not a function."""

    def __init__(self, model: nn.Module, fn: Callable[[Tensor], Tensor]):
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(self, inputs: Tensor) -> Tensor:
        return self._fn(inputs)


@contextlib.contextmanager
def out_of_place_modules(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every module with ``inplace=True`` (``nn.ReLU``,
    ``nn.Dropout``, ...) computes out of place; on exit the flags are
    restored and attributes that the block left on any module (Captum's
    DeepLift stores ``module.input``/``module.output``) are removed, also
    when the body raises.

    Captum's module hooks (DeepLift's, GuidedBackprop's) wrap a module's
    output in a backward hook; an in-place activation then modifies that
    view and autograd fails, and DeepLift's stored input would be
    overwritten by the in-place result.
    """
    modules = list(model.modules())
    keys = [set(vars(m)) for m in modules]
    flipped = [m for m in modules if getattr(m, 'inplace', None) is True]
    try:
        for m in flipped:
            m.inplace = False
        yield model
    finally:
        for m in flipped:
            m.inplace = True
        for m, before in zip(modules, keys):
            for k in [k for k in vars(m) if k not in before]:
                delattr(m, k)


#: Deterministic algorithms whose attribution of a view depends only on that
#: view once the score is the views' average ``S = 1/V sum_v s_v`` (each
#: view's gradient is ``1/V ds_v/dx_v``; layer rows are views): explained
#: in view passes (``max_views_per_pass``) equal to one pass. Not here:
#: random draws shaped like the input (``NoiseTunnel``, ``GradientShap``,
#: ``LayerGradientShap``: the draws would depend on the passes), features
#: or samples that may span views (``FeatureAblation``,
#: ``ShapleyValueSampling``, ``FeaturePermutation``, ``Lime``,
#: ``KernelShap``), ``Neuron*`` (the neuron index is into a layer output
#: whose rows are the views of the pass) and ``Occlusion`` with windows or
#: strides across more than one view (or frame, 2D) on the view axis.
VIEW_SEPARABLE = ('Saliency', 'InputXGradient', 'IntegratedGradients',
                  'DeepLift', 'DeepLiftShap', 'GuidedBackprop',
                  'Deconvolution', 'GuidedGradCam', 'LayerGradCam',
                  'LayerDeepLift', 'LayerIntegratedGradients',
                  'LayerGradientXActivation', 'LayerActivation',
                  'Occlusion')


def _one_on_view_axis(value) -> bool:
    """An ``Occlusion`` window / stride of extent 1 on the input's view
    axis (3D ``[V, C, T, H, W]``; 2D ``[V*T, C, H, W]``: one frame)."""
    if value is None:
        return True
    if isinstance(value, int):
        return value == 1
    return isinstance(value, (tuple, list)) and bool(value) and \
        value[0] == 1


def _first_param(cls) -> str:
    return next(iter(list(inspect.signature(cls.__init__).parameters)[1:]),
                '')


@EXPLAINERS.register_module()
class CaptumExplainer(BaseExplainer):
    """Run ``captum.attr.<algorithm>`` through mmxai.

    The forward function Captum sees takes the preprocessed inputs (the
    model's own layout, all views) and returns the view-averaged class
    scores exactly as ``predict`` computes them, pre-softmax
    (``score='logit'``) or softmax (``'prob'``); targets are resolved by
    mmxai (``'pred'``, ``'gt'``, ints). Input attributions are brought to
    ``[B, V, C, T, H, W]`` and reduced over colour channels
    (``reduction``); layer algorithms (``LayerGradCam``, ...) need
    ``layer='backbone.layer4'`` and their attributions are mapped through
    the adapter's activation grid and upsampled trilinearly.

    Extra keyword arguments go to ``attribute`` (e.g. ``n_steps=32``,
    ``baselines``, ``sliding_window_shapes`` in the model's input layout);
    ``init_kwargs`` go to the algorithm's constructor
    (``NoiseTunnel``: ``init_kwargs=dict(attribution_method='Saliency')``).

    Algorithms that hook the model's modules (``DeepLift``,
    ``DeepLiftShap``, ``GuidedBackprop``, ``Deconvolution``,
    ``GuidedGradCam``, ``LayerDeepLift``) get the score function as a module
    and run with in-place activations switched out of place
    (:func:`out_of_place_modules`, restored after, also on failure). Which
    algorithms work, and why the others do not: ``docs/methods.md``.

    Memory: the algorithms of :data:`VIEW_SEPARABLE` explain the views in
    passes of ``max_views_per_pass`` (results equal one pass; tensor
    options with the input's view axis, e.g. ``baselines``, are cut to the
    pass's views); the others get all views in one call (their own
    ``internal_batch_size`` / ``perturbations_per_eval`` bound them).
    Algorithms taking ``internal_batch_size`` (``IntegratedGradients``,
    ``LayerIntegratedGradients``): here it counts steps per forward and
    sample (Captum's counts steps x samples; the same for one sample),
    default ``n_steps`` (all steps, as Captum), lowered by the memory
    budget when one view per pass does not fit and halved on
    out-of-memory errors.

    Example: ``dict(type='CaptumExplainer', algorithm='IntegratedGradients',
    n_steps=32)``.
    """
    many_forwards = True
    reports_probs = True

    def __init__(self, model: nn.Module,
                 algorithm: str = 'IntegratedGradients',
                 layer: Optional[str] = None, score: str = 'logit',
                 reduction: str = 'sum', init_kwargs: Optional[dict] = None,
                 adapter: Optional[dict] = None,
                 frames_per_view: Optional[int] = None,
                 max_views_per_pass: Optional[int] =
                 BaseExplainer.DEFAULT_VIEWS_PER_PASS,
                 max_memory=None, normalize: str = 'joint',
                 **attribute_kwargs):
        super().__init__(model, adapter=adapter,
                         frames_per_view=frames_per_view,
                         max_views_per_pass=max_views_per_pass,
                         max_memory=max_memory, normalize=normalize)
        import captum.attr as cattr
        check_choice('score', score, SCORES)
        check_choice('reduction', reduction, REDUCTIONS)
        cls = getattr(cattr, str(algorithm), None)
        if not inspect.isclass(cls):
            raise MMXAIError(f"unknown Captum algorithm '{algorithm}' "
                             '(see captum.attr, e.g. IntegratedGradients, '
                             'Occlusion, LayerGradCam)')
        self.algorithm, self.layer, self.score = str(algorithm), layer, score
        self.reduction = reduction
        self.attribute_kwargs = dict(attribute_kwargs)
        init = dict(init_kwargs or {})
        if _first_param(cls) == 'attribution_method':  # NoiseTunnel
            base = init.pop('attribution_method', None)
            base_cls = getattr(cattr, str(base), None)
            if not inspect.isclass(base_cls) or _first_param(base_cls) in (
                    'attribution_method', ''):
                raise MMXAIError(
                    f'Captum {algorithm} wraps another algorithm: give '
                    "init_kwargs=dict(attribution_method='Saliency') (or "
                    'IntegratedGradients, DeepLift, ...)')
            inner = self._make(cattr, base_cls, layer, {})
            self.captum = cls(inner, **init)
        else:
            self.captum = self._make(cattr, cls, layer, init)
        #: layer algorithms return the layer's attributions (mapped through
        #: the activation grid); GuidedGradCam and neuron algorithms take a
        #: layer but return input attributions
        self._layer_output = isinstance(self.captum, cattr.LayerAttribution)
        self._guided_gradcam = isinstance(self.captum, cattr.GuidedGradCam)
        params = inspect.signature(self.captum.attribute).parameters
        self._takes_target = 'target' in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values())  # NoiseTunnel
        kw = self.attribute_kwargs
        #: an instance setting (the algorithm decides; see VIEW_SEPARABLE)
        self.views_separable = self.algorithm in VIEW_SEPARABLE and (
            self.algorithm != 'Occlusion' or (
                _one_on_view_axis(kw.get('sliding_window_shapes')) and
                _one_on_view_axis(kw.get('strides', 1))))
        if 'internal_batch_size' in params:
            # steps per forward and sample (Captum's internal_batch_size
            # counts steps x samples): the memory budget lowers it
            # (BaseExplainer.batch_attr); default all steps, as Captum's
            steps = kw.get('n_steps', params['n_steps'].default
                           if 'n_steps' in params else 1)
            self.batch_attr = 'internal_batch_size'
            self.internal_batch_size = kw.pop('internal_batch_size',
                                              None) or int(steps)

    def _make(self, cattr, cls, layer: Optional[str], init: dict):
        """Build Captum's ``cls`` on the score function (a module where the
        algorithm hooks modules)."""
        params = inspect.signature(cls.__init__).parameters
        if 'layer' in params:
            if layer is None:
                raise MMXAIError(f'Captum {cls.__name__} needs layer=... '
                                 '(a dotted module name)')
            init['layer'] = get_layer(self.model, layer)
        #: the algorithm registers hooks on the model's modules
        self._hooks_modules = _first_param(cls) == 'model'
        fn = _ScoreModule(self.model, self._forward) \
            if self._hooks_modules else self._forward
        return cls(fn, **init)

    def settings(self) -> Dict[str, Any]:
        kw = {k: v for k, v in self.attribute_kwargs.items()
              if isinstance(v, (int, float, str, bool, list, tuple))}
        if self.batch_attr is not None:
            kw['internal_batch_size'] = self.internal_batch_size
        return dict(algorithm=self.algorithm, layer=self.layer,
                    score=self.score, reduction=self.reduction, **kw)

    def _forward(self, inputs: Tensor) -> Tensor:
        """The view-averaged scores Captum explains: pre-softmax, or
        (``'prob'``) each view's softmax averaged, ``predict``'s
        ``pred_score`` with ``average_clips='prob'``."""
        if self.score == 'prob':
            return self.adapter.probs(inputs.contiguous())
        return self.adapter.scores(inputs.contiguous())

    def _pass_kwargs(self, inputs: Tensor) -> Dict[str, Any]:
        """``attribute_kwargs`` for ``inputs``; in a pass of views
        ``[a, b)`` (:attr:`_chunk`) tensors with the input's view axis
        (dim 1 of ``V * r`` rows, e.g. ``baselines [1|N, V, C, T, H, W]``
        or 2D ``[1|N, V*T, C, H, W]``) are cut to rows ``[a r, b r)``;
        dim 1 of size 1 broadcasts. Other tensors: one line."""
        kw = dict(self.attribute_kwargs)
        if self.batch_attr is not None:  # Captum counts steps x samples
            kw['internal_batch_size'] = self.internal_batch_size * \
                inputs.shape[0]
        chunk = self._chunk
        if chunk is None:
            return kw
        views = chunk.stop - chunk.start
        r = inputs.shape[1] // views
        full = chunk.video.shape[1] * r

        def cut(key, v):
            if isinstance(v, (tuple, list)):
                return type(v)(cut(key, t) for t in v)
            if not isinstance(v, Tensor) or v.dim() < 2 or v.shape[1] == 1:
                return v
            if v.dim() == inputs.dim() and v.shape[1] == full:
                return v[:, chunk.start * r:chunk.stop * r]
            raise MMXAIError(
                f'captum: option {key} {tuple(v.shape)} has no view axis '
                f'of {full} rows to cut into view passes; explain in one '
                'pass (max_views_per_pass=None)')
        return {k: cut(k, v) for k, v in kw.items()}

    def _plan(self, video: Tensor, toolbox_chunk: Optional[int]) -> None:
        """The base class's plan; an algorithm whose views do not split
        gets (and reports) every view in one call."""
        super()._plan(video, toolbox_chunk)
        if not self.views_separable:
            plan = self.last_memory_plan
            self._views_per_pass = plan['views_per_pass'] = int(
                video.shape[1])
            if self.batch_attr is not None and plan['view_graph_bytes']:
                # (NeuronIntegratedGradients) a step holds every view
                steps = fitting(plan['budget'], plan['view_graph_bytes'] *
                                video.shape[0] * video.shape[1],
                                self.internal_batch_size)
                self.internal_batch_size = plan['batch_size'] = steps

    def _attribute_in_view_chunks(self, video: Tensor, chunk: int,
                                  target: TargetSpec,
                                  data_samples: Optional[Sequence]
                                  ) -> Attribution:
        """The base class's view passes; ``extras['attributions']``, kept
        per pass as ``[B, V_c, r, ...]``, back in Captum's layout (the
        model's input, or the layer's ``[B*V*r, ...]`` rows)."""
        result = super()._attribute_in_view_chunks(video, chunk, target,
                                                   data_samples)
        attr = result.extras['attributions']
        b, v, r = attr.shape[:3]
        result.extras['attributions'] = attr.reshape(
            b * v * r, *attr.shape[3:]) if self._layer_output else \
            attr.reshape(b, v * r, *attr.shape[3:])
        return result

    def _guided_gradcam_attr(self, inputs: Tensor, targets: Tensor,
                             kw: Dict[str, Any]) -> Tensor:
        """Captum's ``GuidedGradCam`` (guided backprop x the layer's
        Grad-CAM at input resolution), with the Grad-CAM map brought to the
        input through the adapter (views, folded time) and upsampled
        trilinearly like mmxai's CAMs: Captum's own interpolation assumes
        layer and input share the layout ``[N, C, *spatial]``, which video
        inputs ``[B, V, C, T, H, W]`` do not (it returns an empty tensor)."""
        kw = dict(kw)
        kw.pop('interpolate_mode', None)
        x = inputs.detach().clone()
        cam = self.captum.grad_cam.attribute(
            x, target=targets, relu_attributions=True,
            attribute_to_layer_input=kw.pop('attribute_to_layer_input',
                                            False), **kw)
        gbp = self.captum.guided_backprop.attribute(x, target=targets, **kw)
        grid = self.adapter.activation_grid(self.layer, cam.detach(), inputs)
        up = self.adapter.upsample(grid.sum(2), self.layer, inputs)
        video = self.adapter.to_video(gbp.detach())
        return self.adapter.from_video(video * up.unsqueeze(2).to(video))

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, probs, targets = self.scores_probs_targets(
            inputs, target, data_samples)
        modules = out_of_place_modules(self.model) if self._hooks_modules \
            else contextlib.nullcontext()
        kw = self._pass_kwargs(inputs)
        with frozen_parameters(self.model), torch.enable_grad(), modules:
            if self._guided_gradcam:
                attr = self._guided_gradcam_attr(inputs, targets, kw)
            else:
                x = inputs.detach().clone()
                if self._layer_output:  # LayerDeepLift hooks the layer's
                    x.requires_grad_(True)  # output: it must need grads
                if self._takes_target:  # not LayerActivation, Neuron*
                    kw['target'] = targets
                attr = self.captum.attribute(x, **kw)
        if isinstance(attr, tuple):
            attr = attr[0]
        attr = attr.detach()
        if not self._layer_output:
            raw = reduce_channels(self.adapter.to_video(attr).float(),
                                  self.reduction)
            layer_maps = {}
        else:
            grid = self.adapter.activation_grid(self.layer, attr, inputs)
            cam = reduce_channels(grid.float(), self.reduction)
            raw = self.adapter.upsample(cam, self.layer, inputs)
            layer_maps = {self.layer: raw}
        if self._chunk is not None:  # [B, V_c, r, ...] to join by view
            b, views = raw.shape[:2]
            attr = attr.reshape(b, views, -1, *attr.shape[1:]) \
                if self._layer_output else \
                attr.reshape(b, views, -1, *attr.shape[2:])
        return Attribution(raw, scores, targets, layer_maps=layer_maps,
                           extras={'attributions': attr}, probs=probs)
