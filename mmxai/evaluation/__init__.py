"""Explanation metrics for ``test_evaluator`` (registered in
``mmxai.registry.METRICS``) and their Runner-free functions."""
from .average_drop import AverageDrop
from .base import ExplainedBatch, ExplanationMetric
from .deletion_insertion import DeletionInsertionAUC
from .model_randomization import ModelRandomization
from .pointing import GT_META_KEYS, PointingGame, load_ground_truth
from .mask_iou import MaskIoU, mask_iou, threshold_map  # noqa: E402
from .minimal_mask import MinimalMask, minimal_mask  # noqa: E402
from .functional import (auc, average_drop, deletion_insertion_curve,  # noqa
                         gaussian_blur, pointing_game, temporal_grounding)
from .localization import (centre_map, energy_in_tube,  # noqa: E402
                           localization_scores, random_map, scaled_tolerance,
                           st_pointing_game, temporal_energy,
                           temporal_grounding_hit)
from .phase_metrics import (PhaseMetric, edit_score,  # noqa: E402
                            f1_at_k, f1_counts, frame_accuracy,
                            phase_report, phase_scores,
                            relaxed_phase_scores, segments)
from .sanity import (cascading_randomization, default_cascade,  # noqa: E402
                     rank_correlation, randomize_layers, randomized_copy)
from .agreement import agreement_matrix, mean_agreement  # noqa: E402
from .cost import measure  # noqa: E402
from .recommendation import recommend_from, recommend_hook  # noqa: E402

__all__ = [
    'agreement_matrix', 'mean_agreement', 'measure', 'recommend_from',
    'recommend_hook',
    'AverageDrop', 'DeletionInsertionAUC', 'ExplainedBatch',
    'ExplanationMetric', 'GT_META_KEYS', 'ModelRandomization',
    'PointingGame', 'auc',
    'average_drop', 'deletion_insertion_curve', 'gaussian_blur',
    'load_ground_truth', 'pointing_game', 'temporal_grounding',
    'centre_map', 'energy_in_tube', 'localization_scores', 'random_map',
    'scaled_tolerance', 'st_pointing_game', 'temporal_energy',
    'temporal_grounding_hit', 'cascading_randomization', 'default_cascade',
    'rank_correlation',
    'randomize_layers', 'randomized_copy', 'PhaseMetric', 'edit_score',
    'f1_at_k', 'f1_counts', 'frame_accuracy', 'phase_report',
    'phase_scores', 'relaxed_phase_scores', 'segments',
    'MaskIoU', 'mask_iou', 'threshold_map', 'MinimalMask', 'minimal_mask'
]
