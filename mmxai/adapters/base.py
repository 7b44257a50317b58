"""Model adapters: hide how each recognizer family lays out its tensors.

An adapter answers four questions for explainers, whatever the family:

* the canonical video of an input: ``to_video(inputs) -> [B, V, C, T, H, W]``
  and back (``from_video``), for methods that perturb pixels;
* the class scores exactly as ``predict`` computes them, before the softmax
  (``scores``), and the probabilities ``predict`` reports with
  ``average_clips='prob'`` (``probs``: per-view softmax, averaged);
* a layer's output as an activation grid ``[B, V, C, t, h, w]``
  (``activation_grid``) and a grid map back at input resolution
  (``upsample``);
* sensible default target layers.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import ADAPTERS


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip MMEngine/PyTorch model wrappers (DDP, MMDistributedDataParallel)."""
    from mmengine.model import is_model_wrapper
    while is_model_wrapper(model) or isinstance(
            model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


@ADAPTERS.register_module()
class Recognizer3DAdapter:
    """``Recognizer3D`` (I3D, SlowOnly, R(2+1)D, CSN, X3D, C3D, ...).

    Inputs after the data preprocessor are ``[B, V, C, T, H, W]``; layers
    produce ``[B*V, C, t, h, w]``.
    """
    family = 'recognizer3d'
    input_format = 'NCTHW'
    #: Higher priority adapters are tried first by ``build_adapter``.
    priority = 0

    def __init__(self, model: nn.Module, **kwargs):
        self.model = unwrap_model(model)
        #: The config whose test pipeline made the inputs, when the model
        #: carries none (``model.cfg``): the Runner's models, set by the
        #: hook and dataset runs (view layouts are read from it).
        self.pipeline_config = None

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer3D
        return isinstance(model, Recognizer3D)

    # ------------------------------------------------------------- layout
    def to_video(self, inputs: Tensor) -> Tensor:
        """Model inputs ``[B, V, C, T, H, W]`` -> canonical (the same here)."""
        if inputs.dim() != 6:
            raise UnsupportedModelError(
                f'{self.family} expects inputs [B, V, C, T, H, W] after the '
                f'data preprocessor, got {tuple(inputs.shape)}')
        return inputs

    def from_video(self, video: Tensor) -> Tensor:
        """Canonical ``[B, V, C, T, H, W]`` -> model inputs."""
        return video

    def input_shape(self, inputs: Tensor) -> Tuple[int, int, int, int, int]:
        """``(B, V, T, H, W)`` of model inputs."""
        b, v, _, t, h, w = self.to_video(inputs).shape
        return b, v, t, h, w

    # ------------------------------------------------------------- scores
    @property
    def num_classes(self) -> int:
        return int(self.model.cls_head.num_classes)

    def scores(self, inputs: Tensor, per_view: bool = False) -> Tensor:
        """Pre-softmax class scores, computed as ``predict`` does.

        ``extract_feat(test_mode=True)``, the head, then the head's
        ``average_clip`` in ``'score'`` mode (the head's own setting is
        restored). Returns ``[B, K]``, or ``[B, S, K]`` per view/segment
        score when ``per_view`` (S as the head reports them).
        """
        model = self.model
        batch = inputs.shape[0]
        test_cfg = getattr(model, 'test_cfg', None) or {}
        if batch > 1 and test_cfg.get('max_testing_views', False):
            # MMAction2 chunks the views of one sample at a time only
            return torch.cat([self.scores(inputs[i:i + 1], per_view)
                              for i in range(batch)])
        feats, kwargs = model.extract_feat(inputs, test_mode=True)
        cls_scores = model.cls_head(feats, **kwargs)
        return average_view_scores(model.cls_head, cls_scores, batch,
                                   per_view)

    def probs(self, inputs: Tensor) -> Tensor:
        """Class probabilities ``[B, K]`` as ``predict`` reports them with
        the toolbox's ``average_clips='prob'``: the softmax of each view's
        score, averaged over views (with one view: the softmax of
        :meth:`scores`). Not the softmax of the view-averaged score."""
        return self.scores(inputs, per_view=True).float().softmax(-1).mean(1)

    def scores_and_probs(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """:meth:`scores` and :meth:`probs` from one forward: ``[B, K]``
        view-averaged pre-softmax scores and ``[B, K]`` per-view softmax
        averaged (``predict``'s ``pred_score`` under ``average_clips='prob'``).
        """
        per_view = self.scores(inputs, per_view=True)
        return per_view.mean(1), per_view.float().softmax(-1).mean(1)

    @property
    def pred_uses_probs(self) -> bool:
        """``predict``'s ``pred_label`` is the arg-max of :meth:`probs`
        (the head averages ``'prob'``, or its default ``None``), not of
        :meth:`scores` (``average_clips='score'``)."""
        return getattr(self.model.cls_head, 'average_clips',
                       'prob') != 'score'

    # ------------------------------------------------------------- layers
    def default_target_layers(self) -> List[str]:
        """The module whose output feeds the head: last conv features."""
        return ['neck'] if getattr(self.model, 'with_neck', False) \
            else ['backbone']

    def activation_grid(self, name: str, act: Tensor, inputs: Tensor) -> Tensor:
        """A layer output -> ``[B, V, C, t, h, w]``: ``[B*V, C, t, h, w]``
        (3D layers), or ``[B*V*t, C, h, w]`` with time folded into the batch
        (2D recognizers' frames, C2D's inner layers)."""
        b, v, _, _, _ = self.input_shape(inputs)
        act = _first_tensor(name, act)
        if act.dim() == 5 and act.shape[0] == b * v:
            return act.view(b, v, *act.shape[1:])
        if act.dim() == 4 and act.shape[0] % (b * v) == 0:
            # time folded into the batch, '(b t) c h w' (C2D's inner layers)
            t = act.shape[0] // (b * v)
            return act.view(b, v, t, *act.shape[1:]).permute(0, 1, 3, 2, 4, 5)
        raise UnsupportedModelError(
            f"layer '{name}' gives {tuple(act.shape)}, not a spatio-temporal "
            f'grid [B*V={b * v}, C, t, h, w]; choose a convolutional layer '
            f'(e.g. {", ".join(self.default_target_layers())})')

    def upsample(self, grid_map: Tensor, name: str, inputs: Tensor) -> Tensor:
        """``[B, V, t, h, w]`` -> ``[B, V, T, H, W]`` at input resolution
        (trilinear)."""
        _, _, t, h, w = self.input_shape(inputs)
        return upsample_maps(grid_map, (t, h, w))

    def time_bases(self, inputs: Tensor) -> Dict[str, int]:
        """Input frames each target layer's map is shown on (one pathway)."""
        return {}

    def head_feature_parts(self, feats, inputs: Tensor
                           ) -> List[Tuple[str, Tensor]]:
        """The classifier head's input -> ``[(name, grid [B,V,C_p,t,h,w])]``
        in the order the head concatenates channels (one part here; one per
        pathway for multi-pathway models). ``name`` picks the time base
        used by :meth:`upsample`."""
        return [('cls_head', self.activation_grid('cls_head', feats, inputs))]


def average_view_scores(head: nn.Module, cls_scores: Tensor, batch: int,
                        per_view: bool = False) -> Tensor:
    """Head scores ``[B*S, K]`` -> ``[B, K]`` by the head's own
    ``average_clip`` in ``'score'`` mode (its setting restored), or
    ``[B, S, K]`` with ``per_view``."""
    num_segs = cls_scores.shape[0] // batch
    if per_view:
        return cls_scores.view(batch, num_segs, -1)
    saved = head.average_clips
    head.average_clips = 'score'
    try:
        return head.average_clip(cls_scores, num_segs=num_segs)
    finally:
        head.average_clips = saved


def _first_tensor(name: str, act) -> Tensor:
    if isinstance(act, Tensor):
        return act
    if isinstance(act, (tuple, list)) and act and isinstance(act[0], Tensor):
        if len(act) == 1 or not all(isinstance(a, Tensor) for a in act):
            return act[0]
    raise UnsupportedModelError(
        f"layer '{name}' returns {type(act).__name__} of several tensors; "
        'name one of its sub-layers instead (e.g. one per pathway)')


def upsample_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Trilinear resize of ``[B, V, t, h, w]`` maps to ``[B, V, *size]``."""
    b, v = maps.shape[:2]
    if tuple(maps.shape[2:]) == tuple(size):
        return maps
    out = F.interpolate(maps.reshape(b * v, 1, *maps.shape[2:]).float(),
                        size=tuple(size), mode='trilinear',
                        align_corners=False)
    return out.view(b, v, *size)


def build_adapter(model: nn.Module, adapter: Optional[dict] = None,
                  **kwargs):
    """Pick the adapter for ``model``'s family (or build ``adapter`` cfg).

    Raises:
        UnsupportedModelError: the recognizer family is not supported; the
            message lists the supported ones.
    """
    model = unwrap_model(model)
    if adapter is not None:
        cfg = dict(adapter)
        cfg.update(model=model, **kwargs)
        return ADAPTERS.build(cfg)
    classes = sorted(ADAPTERS.module_dict.values(),
                     key=lambda c: -getattr(c, 'priority', 0))
    for cls in classes:
        if cls.matches(model):
            return cls(model, **kwargs)
    families = ', '.join(sorted({c.family for c in classes}))
    raise UnsupportedModelError(
        f'{type(model).__name__} is not a supported recognizer; mmxai '
        f'supports: {families}')
