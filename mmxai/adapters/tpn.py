"""TPN (Temporal Pyramid Network) necks on 3D and 2D backbones."""
from torch import Tensor, nn

from ..registry import ADAPTERS
from .base import Recognizer3DAdapter, average_view_scores
from .recognizer2d import Recognizer2DAdapter


def _tpn_scores(adapter, inputs: Tensor, per_view: bool) -> Tensor:
    """Scores as ``predict`` computes them. With ``fcn_test`` (the toolbox's
    test setting) ``TPNHead`` pools and applies a lazily built 1x1x1 copy of
    ``fc_cls``; building it inside a gradient pass fails in MMAction2 and it
    would add a module to the model, so the head's non-fcn 3D-pooling path
    is used: pooling then ``fc_cls`` itself (the same numbers)."""
    model = adapter.model
    batch = inputs.shape[0]
    head = model.cls_head
    feats, kwargs = model.extract_feat(inputs, test_mode=True)
    if kwargs.get('fcn_test') and getattr(head, 'avg_pool3d',
                                          None) is not None:
        # the head's own 3D-pooling path: avg_pool3d, (eval) dropout, fc_cls
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in ('fcn_test', 'num_segs')}
    return average_view_scores(head, head(feats, **kwargs), batch, per_view)


def _has_tpn(model: nn.Module) -> bool:
    return type(getattr(model, 'neck', None)).__name__ == 'TPN'


@ADAPTERS.register_module()
class TPN3DAdapter(Recognizer3DAdapter):
    """``Recognizer3D`` + TPN neck (e.g. TPN-SlowOnly); target: the neck."""
    family = 'tpn'
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return super().matches(model) and _has_tpn(model)

    def scores(self, inputs: Tensor, per_view: bool = False) -> Tensor:
        return _tpn_scores(self, inputs, per_view)


@ADAPTERS.register_module()
class TPN2DAdapter(Recognizer2DAdapter):
    """``Recognizer2D`` + TPN neck (e.g. TPN-TSM); the neck's output is
    ``[B*V, C, t, h, w]``."""
    family = 'tpn-2d'
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return super().matches(model) and _has_tpn(model)

    def scores(self, inputs: Tensor, per_view: bool = False) -> Tensor:
        return _tpn_scores(self, inputs, per_view)

    def default_target_layers(self):
        return ['neck']
