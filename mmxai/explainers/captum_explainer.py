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
                 max_memory=None, normalize: str = 'joint',
                 **attribute_kwargs):
        super().__init__(model, adapter=adapter,
                         frames_per_view=frames_per_view,
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
        return dict(algorithm=self.algorithm, layer=self.layer,
                    score=self.score, reduction=self.reduction, **kw)

    def _forward(self, inputs: Tensor) -> Tensor:
        """The view-averaged scores Captum explains: pre-softmax, or
        (``'prob'``) each view's softmax averaged, ``predict``'s
        ``pred_score`` with ``average_clips='prob'``."""
        if self.score == 'prob':
            return self.adapter.probs(inputs.contiguous())
        return self.adapter.scores(inputs.contiguous())

    def _guided_gradcam_attr(self, inputs: Tensor, targets: Tensor
                             ) -> Tensor:
        """Captum's ``GuidedGradCam`` (guided backprop x the layer's
        Grad-CAM at input resolution), with the Grad-CAM map brought to the
        input through the adapter (views, folded time) and upsampled
        trilinearly like mmxai's CAMs: Captum's own interpolation assumes
        layer and input share the layout ``[N, C, *spatial]``, which video
        inputs ``[B, V, C, T, H, W]`` do not (it returns an empty tensor)."""
        kw = dict(self.attribute_kwargs)
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
        with frozen_parameters(self.model), torch.enable_grad(), modules:
            if self._guided_gradcam:
                attr = self._guided_gradcam_attr(inputs, targets)
            else:
                x = inputs.detach().clone()
                if self._layer_output:  # LayerDeepLift hooks the layer's
                    x.requires_grad_(True)  # output: it must need grads
                kw = dict(self.attribute_kwargs)
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
        return Attribution(raw, scores, targets, layer_maps=layer_maps,
                           extras={'attributions': attr}, probs=probs)
