"""What an explainer's ``_attribute`` returns (:class:`Attribution`)."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from torch import Tensor


@dataclass(frozen=True)
class Attribution:
    """The result of ``BaseExplainer._attribute``, before normalisation.

    Attributes:
        raw_maps: ``[B, V, T, H, W]`` unnormalised maps at input resolution.
        scores: ``[B, K]`` pre-softmax scores of the model (views averaged).
        targets: ``[B]`` explained class per sample.
        layer_maps: raw maps per target layer / pathway, each
            ``[B, V, T_l, H, W]`` (that layer's input time base).
        extras: method-specific outputs (kept in ``Explanation.extras``).
        probs: ``[B, K]`` the per-view softmax averaged over views (what
            ``predict`` reports as ``pred_score`` with
            ``average_clips='prob'``), when the method has it from its own
            forward; ``None``: ``attribute()`` computes it (one
            gradient-free pass when there are several views).
    """
    raw_maps: Tensor
    scores: Tensor
    targets: Tensor
    layer_maps: Dict[str, Tensor] = field(default_factory=dict)
    extras: Dict[str, Any] = field(default_factory=dict)
    probs: Optional[Tensor] = None
