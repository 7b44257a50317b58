"""The base explainer: one ``attribute()`` for every method."""
import time
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..adapters import build_adapter, unwrap_model
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
    """
    #: The method's name (CLI, outputs such as ``explanation.json``): set
    #: for each subclass by the naming rule of :mod:`.builder` unless the
    #: subclass sets it.
    name = 'base'
    #: Methods that run many forwards keep freed CPU memory in the process
    #: while they run (:func:`mmxai.utils.heap.retained_heap`).
    many_forwards = False

    def __init__(self, model: nn.Module, adapter: Optional[dict] = None,
                 frames_per_view: Optional[int] = None):
        self.model = unwrap_model(model)
        kwargs = {} if frames_per_view is None else dict(
            frames_per_view=frames_per_view)
        self.adapter = build_adapter(self.model, adapter, **kwargs)

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
                retained_heap(self.many_forwards and on_cpu):
            self.model.eval()
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
