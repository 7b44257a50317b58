"""Any Captum attribution algorithm on any MMAction2 recognizer."""
import inspect
from typing import Any, Dict, Optional, Sequence

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
    ``init_kwargs`` go to the algorithm's constructor.

    Example: ``dict(type='CaptumExplainer', algorithm='IntegratedGradients',
    n_steps=32)``.
    """
    many_forwards = True

    def __init__(self, model: nn.Module,
                 algorithm: str = 'IntegratedGradients',
                 layer: Optional[str] = None, score: str = 'logit',
                 reduction: str = 'sum', init_kwargs: Optional[dict] = None,
                 adapter: Optional[dict] = None,
                 frames_per_view: Optional[int] = None, **attribute_kwargs):
        super().__init__(model, adapter=adapter,
                         frames_per_view=frames_per_view)
        import captum.attr as cattr
        check_choice('score', score, SCORES)
        check_choice('reduction', reduction, REDUCTIONS)
        cls = getattr(cattr, str(algorithm), None)
        if not inspect.isclass(cls):
            raise MMXAIError(f"unknown Captum algorithm '{algorithm}' "
                             '(see captum.attr, e.g. IntegratedGradients, '
                             'Occlusion, LayerGradCam)')
        params = inspect.signature(cls.__init__).parameters
        self.algorithm, self.layer, self.score = str(algorithm), layer, score
        self.reduction = reduction
        self.attribute_kwargs = dict(attribute_kwargs)
        init = dict(init_kwargs or {})
        if 'layer' in params:
            if layer is None:
                raise MMXAIError(f'Captum {algorithm} needs layer=... '
                                 '(a dotted module name)')
            init['layer'] = get_layer(self.model, layer)
        self.captum = cls(self._forward, **init)

    def settings(self) -> Dict[str, Any]:
        kw = {k: v for k, v in self.attribute_kwargs.items()
              if isinstance(v, (int, float, str, bool, list, tuple))}
        return dict(algorithm=self.algorithm, layer=self.layer,
                    score=self.score, reduction=self.reduction, **kw)

    def _forward(self, inputs: Tensor) -> Tensor:
        s = self.adapter.scores(inputs.contiguous())
        return s.softmax(-1) if self.score == 'prob' else s

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets = self.scores_and_targets(inputs, target,
                                                  data_samples)
        with frozen_parameters(self.model), torch.enable_grad():
            attr = self.captum.attribute(inputs.detach().clone(),
                                         target=targets,
                                         **self.attribute_kwargs)
        if isinstance(attr, tuple):
            attr = attr[0]
        attr = attr.detach()
        if self.layer is None:
            raw = reduce_channels(self.adapter.to_video(attr).float(),
                                  self.reduction)
            layer_maps = {}
        else:
            grid = self.adapter.activation_grid(self.layer, attr, inputs)
            cam = reduce_channels(grid.float(), self.reduction)
            raw = self.adapter.upsample(cam, self.layer, inputs)
            layer_maps = {self.layer: raw}
        return Attribution(raw, scores, targets, layer_maps=layer_maps,
                           extras={'attributions': attr})
