"""Shared plumbing of explanation metrics: where their maps come from.

A metric in ``test_evaluator`` sees only the data batch and the model's
predictions. :class:`~mmxai.engine.ExplainHook` computes the explanations of
a test batch just before the test step and feeds the resulting
:class:`ExplainedBatch` (maps, inputs, adapter, explainer config, ranks) to
every :class:`ExplanationMetric` of the test evaluator; a metric reads only
that batch, never the hook.

With several explainers the hook feeds ``{method: ExplainedBatch}``: the
metric scores every method's maps with the same ``evaluate_batch`` and
reports ``<prefix>/<method>/<key>`` (its own ``compute_metrics`` per method)
and ``<prefix>/<method>/<key>_ci95`` (``[low, high]``, a Student's t
interval over samples, :mod:`.method_stats`); :attr:`method_stats` keeps
the full statistics of the last evaluation.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from mmengine.evaluator import BaseMetric
from torch import Tensor

from ..errors import ConfigError
from .method_stats import METHOD_KEY, method_metric_stats


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
        self._batch: Union[None, ExplainedBatch,
                           Mapping[str, ExplainedBatch]] = None
        self._per_method = False
        self._methods: List[str] = []
        #: after a per-method evaluation: ``{method: {key: dict(value,
        #: mean, std, ci95, n, per_sample)}}`` (main process)
        self.method_stats: Dict[str, Dict[str, Dict[str, Any]]] = {}

    def feed(self, batch: Union[None, ExplainedBatch,
                                Mapping[str, ExplainedBatch]]) -> None:
        """The explanations of the current test batch (None: none); the
        hook calls this before every test step. A mapping ``{method:
        batch}`` (several explainers; ``{}``: none this step) switches the
        metric to per-method results."""
        self._fed = True
        self._batch = batch
        if isinstance(batch, Mapping):
            self._per_method = True
            for name in batch:
                if name not in self._methods:
                    self._methods.append(name)
        elif batch is not None:
            self._per_method = False

    def unbind(self) -> None:
        """Forget the hook's batches (end of the test run)."""
        self._fed = False
        self._batch = None
        self._per_method = False
        self._methods = []

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        if not self._fed:
            raise ConfigError(
                f'{type(self).__name__} needs the explanations of the test '
                "batch: add dict(type='mmxai.ExplainHook', ...) to "
                'custom_hooks (e.g. _base_/explain/deletion_insertion.py)')
        batch = self._batch
        if isinstance(batch, Mapping):
            self.results.extend(self._evaluate_methods(batch))
            return
        if batch is None or not batch.positions:
            return
        self.results.extend(self.evaluate_batch(batch))

    def _evaluate_methods(self, batches: Mapping[str, ExplainedBatch]
                          ) -> List[dict]:
        """One result per explained sample (so the evaluator's ``size``
        still bounds the results): ``{METHOD_KEY: {method: [rows]}}``."""
        per_index: Dict[Any, Dict[str, List[dict]]] = {}
        for name, b in batches.items():
            if b is None or not b.positions:
                continue
            for j, row in enumerate(self.evaluate_batch(b)):
                idx = row.get('index', b.indices[min(j, len(b.indices) - 1)])
                per_index.setdefault(idx, {}).setdefault(name, []).append(row)
        return [{'index': idx, METHOD_KEY: rows}
                for idx, rows in per_index.items()]

    def evaluate(self, size: int) -> dict:
        """As :meth:`BaseMetric.evaluate`; per method when fed a mapping."""
        if not self._per_method:
            return super().evaluate(size)
        own = self.compute_metrics
        order = list(self._methods)

        def per_method(results: List[dict]) -> Dict[str, Any]:
            rows: Dict[str, List[dict]] = {m: [] for m in order}
            for r in results:
                for name, rs in r[METHOD_KEY].items():
                    rows.setdefault(name, []).extend(rs)
            self.method_stats = {m: method_metric_stats(own, rs)
                                 for m, rs in rows.items() if rs}
            out: Dict[str, Any] = {}
            for m, stats in self.method_stats.items():
                for k, st in stats.items():
                    out[f'{m}/{k}'] = st['value']
                    if st.get('ci95') is not None:
                        out[f'{m}/{k}_ci95'] = [round(x, 6)
                                                for x in st['ci95']]
            return out

        self.compute_metrics = per_method  # this evaluation only
        try:
            return super().evaluate(size)
        finally:
            del self.compute_metrics

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        raise NotImplementedError
