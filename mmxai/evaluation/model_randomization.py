"""Model parameter randomisation (Adebayo et al. 2018) as a test metric."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, MMXAIError
from ..explainers import build_explainer
from ..registry import METRICS
from .base import ExplainedBatch, ExplanationMetric
from .sanity import cascading_randomization, default_cascade


@METRICS.register_module()
class ModelRandomization(ExplanationMetric):
    """Sanity check of the hook's explainer on the test set's own clips.

    For each explained batch the explainer (``ExplainHook``'s ``explainer``
    config) is rebuilt on a copy of the model whose ``cascade`` layers are
    re-initialised top-down, cumulatively (Adebayo et al. 2018, cascading
    randomisation); the raw maps ``[V, T, H, W]`` of the same target classes
    are compared with the trained model's by Spearman rank correlation. A
    method that explains the model (not only the input) gives maps that
    decorrelate. The model under test is never modified.

    Cost per explained batch: one model copy and ``len(cascade)``
    explanations; ``max_samples`` bounds it.

    Args:
        cascade: module names, top first; default
            :func:`~mmxai.evaluation.sanity.default_cascade` (``cls_head``,
            the neck, the backbone's top-level modules that shape the
            features, last run first, probed on the first batch).
        threshold: the check passes when the mean correlation after the
            whole cascade is below it (0.5, the benchmark's rule).
        max_samples: score the first this many samples the hook explains,
            by dataset index (``ExplainHook.rank``), so the same samples
            under any world size (None: all).
        seed: seed of the re-initialisation (the same copy for every batch).
        keep_steps: also report the mean correlation after each step.
    Reports ``<prefix>/randomization_spearman`` (after the whole cascade),
    ``randomization_spearman_head`` (after the first step only) and
    ``randomization_passed`` (1.0 or 0.0); with ``keep_steps``
    ``randomization_curve`` (a list, one value per step).
    """

    def __init__(self, cascade: Optional[Sequence[str]] = None,
                 threshold: float = 0.5, max_samples: Optional[int] = 8,
                 seed: int = 0, keep_steps: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if cascade is not None:
            cascade = [cascade] if isinstance(cascade, str) else list(cascade)
            if not cascade:
                raise MMXAIError('cascade names no layer; leave it out for '
                                 'the default (cls_head, neck, backbone '
                                 'top-level modules)')
        if max_samples is not None and int(max_samples) < 1:
            raise MMXAIError(f'max_samples must be >= 1, got {max_samples}')
        self.cascade = cascade
        self.threshold = float(threshold)
        self.max_samples = None if max_samples is None else int(max_samples)
        self.seed = int(seed)
        self.keep_steps = keep_steps

    def evaluate_batch(self, batch: ExplainedBatch) -> List[dict]:
        if batch.explainer_cfg is None:
            raise ConfigError(
                'ModelRandomization needs the explainer config of the '
                "explanations (mmxai.ExplainHook's explainer=...)")
        # ExplainHook ranks samples by dataset index; a batch built by hand
        # without ranks is ranked by position
        ranks = range(len(batch.indices)) if batch.ranks is None \
            else batch.ranks
        keep = [j for j, r in enumerate(ranks)
                if self.max_samples is None or r < self.max_samples]
        if not keep:
            return []
        exp = batch.explanation
        model = batch.adapter.model
        if not self.cascade:  # probed once, on the first batch it sees
            self.cascade = default_cascade(model, batch.inputs)
        cascade = self.cascade
        sel = torch.as_tensor(keep)
        inputs = batch.inputs[sel.to(batch.inputs.device)]
        targets = torch.as_tensor(exp.targets).cpu()[sel].tolist()
        samples = [batch.data_samples[j] for j in keep]

        def explain(mdl):
            explainer = build_explainer(batch.explainer_cfg, mdl)
            with torch.enable_grad():
                return explainer.attribute(inputs, targets,
                                           samples).raw_maps.float()

        steps = cascading_randomization(
            explain, model, cascade, seed=self.seed,
            reference=exp.raw_maps[sel.to(exp.raw_maps.device)].float())
        return [dict(index=batch.indices[j],
                     steps=[s['per_sample'][k] for s in steps])
                for k, j in enumerate(keep)]

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            return {}
        curve = np.mean([r['steps'] for r in results], 0)
        out = dict(randomization_spearman=float(curve[-1]),
                   randomization_spearman_head=float(curve[0]),
                   randomization_passed=float(curve[-1] < self.threshold))
        if self.keep_steps:
            out['randomization_curve'] = curve.round(4).tolist()
        return out
