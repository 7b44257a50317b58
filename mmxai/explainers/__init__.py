"""Explanation methods, each registered in ``mmxai.registry.EXPLAINERS``.

A new method: a ``BaseExplainer`` subclass in its own module, registered
with ``@EXPLAINERS.register_module()``, implementing ``_attribute`` (returns
an :class:`Attribution`), imported and exported here. Its name follows the
rule of :mod:`.builder` (snake_case of the class name, or an entry of
``METHOD_ALIASES``).
"""
from .attribution import Attribution
from .base import BaseExplainer
from .builder import (METHOD_ALIASES, build_explainer, method_name,
                      method_names)
from .explanation import Explanation
from .targets import resolve_targets

# isort: off
# The methods, in registration order (the order of ``method_names()``).
from .gradcam import GradCAM, GradCAMPlusPlus
from .saliency_tubes import SaliencyTubes
from .attention import AttentionRelevance, AttentionRollout
from .captum_explainer import CaptumExplainer
from .cfp import ClassFeaturePyramid
from .gradients import IntegratedGradients, Saliency, SmoothGrad
from .occlusion import Occlusion3D
from .rise import RISE3D
from .step import STEP
from .supervoxels import SupervoxelKernelSHAP, SupervoxelLIME
from .supervoxel_removal import SupervoxelLOCO, SupervoxelUnivariate
from .cam_gradient import GradCAMElementWise, HiResCAM, LayerCAM, XGradCAM
from .cam_score import ISCAM, SSCAM, ScoreCAM
from .cam_eigen import EigenCAM, EigenGradCAM
from .cam_ablation import AblationCAM
from .cam_smooth import SmoothGradCAMPlusPlus
from .cam_feature import FEM
from .cam_finer import FinerCAM
from .frame_shapley import FrameShapley
from .legrad import LeGrad
from .staa import STAA
from .temporal_mask import TemporalMask
from .aosa import AOSA
from .swagv import SWAGV
from .lrp import LRP
# isort: on

__all__ = [
    'BaseExplainer', 'Attribution', 'Explanation', 'METHOD_ALIASES',
    'build_explainer', 'method_name', 'method_names', 'resolve_targets',
    # methods
    'GradCAM', 'GradCAMPlusPlus', 'SaliencyTubes', 'AttentionRollout',
    'AttentionRelevance', 'CaptumExplainer', 'ClassFeaturePyramid',
    'Saliency', 'IntegratedGradients', 'SmoothGrad', 'Occlusion3D', 'RISE3D',
    'STEP', 'SupervoxelLIME', 'SupervoxelKernelSHAP',
    'SupervoxelLOCO', 'SupervoxelUnivariate',
    'XGradCAM', 'LayerCAM', 'HiResCAM', 'GradCAMElementWise', 'ScoreCAM',
    'SSCAM', 'ISCAM', 'EigenCAM', 'EigenGradCAM', 'AblationCAM',
    'SmoothGradCAMPlusPlus', 'FEM', 'FinerCAM',
    'FrameShapley',
    'LeGrad', 'STAA',
    'TemporalMask',
    'AOSA', 'SWAGV',
    'LRP',
]
