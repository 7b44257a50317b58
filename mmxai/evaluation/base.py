"""Shared plumbing of explanation metrics: where their maps come from.

A metric in ``test_evaluator`` sees only the data batch and the model's
predictions. :class:`~mmxai.engine.ExplainHook` computes the explanations of
a test batch just before the test step and feeds the resulting
:class:`ExplainedBatch` (maps, inputs, adapter, explainer config, ranks) to
every :class:`ExplanationMetric` of the test evaluator; a metric reads only
that batch, never the hook.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from torch import Tensor

from ..errors import ConfigError


@dataclass
class ExplainedBatch:
    """The explained samples of one test batch.

    Attributes:
        positions: positions in the batch of the explained samples.
        indices: their dataset indices.
        inputs: their preprocessed inputs (model layout, N samples).
        data_samples: their preprocessed ``ActionDataSample``.
        explanation: :class:`~mmxai.Explanation` of the primary target
            (maps ``[N, V, T, H, W]``).
        adapter: the model adapter (``adapter.model`` is the unwrapped model).
        extra: further explanations (top-k ranks > 1), as a list.
        explainer_cfg: the config the explanations were built from (to
            rebuild the explainer on another model, e.g. a randomised copy).
        ranks: each sample's rank among all the samples the hook explains
            (by dataset index; the same under any world size), or None.
    """
    positions: List[int]
    indices: List[int]
    inputs: Tensor
    data_samples: Sequence
    explanation: Any
    adapter: Any
    extra: List[Any] = field(default_factory=list)
    explainer_cfg: Any = None
    ranks: Optional[List[int]] = None


class ExplanationMetric(BaseMetric):
    """Base for metrics that score the explanations of the test set.

    Subclasses implement :meth:`evaluate_batch` (one result dict per
    explained sample) and :meth:`compute_metrics`. Samples the hook skips
    (``interval``, ``max_samples``) are not scored.
    """
    default_prefix: Optional[str] = 'mmxai'

    def __init__(self, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self._fed = False
        self._batch: Optional[ExplainedBatch] = None

    def feed(self, batch: Optional[ExplainedBatch]) -> None:
        """The explanations of the current test batch (None: none); the
        hook calls this before every test step."""
        self._fed = True
        self._batch = batch

    def unbind(self) -> None:
        """Forget the hook's batches (end of the test run)."""
        self._fed = False
        self._batch = None

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        if not self._fed:
            raise ConfigError(
                f'{type(self).__name__} needs the explanations of the test '
                "batch: add dict(type='mmxai.ExplainHook', ...) to "
                'custom_hooks (e.g. _base_/explain/deletion_insertion.py)')
        batch = self._batch
        if batch is None or not batch.positions:
            return
        self.results.extend(self.evaluate_batch(batch))

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        raise NotImplementedError
