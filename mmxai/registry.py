"""mmxai's registries: children of MMAction2's, in scope ``mmxai``.

A config whose default scope is ``mmaction`` reaches them as ``mmxai.Name``
(e.g. ``dict(type='mmxai.ExplainHook')``); inside mmxai's own configs and
builders the plain name works, and MMAction2's classes stay reachable by name.
"""
from mmaction.registry import DATASETS as MMA_DATASETS
from mmaction.registry import HOOKS as MMA_HOOKS
from mmaction.registry import METRICS as MMA_METRICS
from mmaction.registry import MODELS as MMA_MODELS
from mmaction.registry import TRANSFORMS as MMA_TRANSFORMS
from mmaction.registry import VISBACKENDS as MMA_VISBACKENDS
from mmaction.registry import VISUALIZERS as MMA_VISUALIZERS
from mmengine.registry import Registry

#: Explanation methods (Grad-CAM, Saliency Tubes, RISE, ...).
EXPLAINERS = Registry(
    'explainer', parent=MMA_MODELS, scope='mmxai',
    locations=['mmxai.explainers'])
#: Model adapters: how each recognizer family lays out its tensors.
#: (MMAction2's MODELS has one child per scope, taken by EXPLAINERS.)
ADAPTERS = Registry(
    'model adapter', scope='mmxai', locations=['mmxai.adapters'])
HOOKS = Registry(
    'hook', parent=MMA_HOOKS, scope='mmxai', locations=['mmxai.engine'])
VISUALIZERS = Registry(
    'visualizer', parent=MMA_VISUALIZERS, scope='mmxai',
    locations=['mmxai.visualization'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMA_VISBACKENDS, scope='mmxai',
    locations=['mmxai.visualization'])
METRICS = Registry(
    'metric', parent=MMA_METRICS, scope='mmxai',
    locations=['mmxai.evaluation'])
DATASETS = Registry(
    'dataset', parent=MMA_DATASETS, scope='mmxai',
    locations=['mmxai.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMA_TRANSFORMS, scope='mmxai',
    locations=['mmxai.datasets'])
#: Method-specific output writers (e.g. CFP's pyramid figure), by the
#: explainer's registered ``name``: ``fn(explanation, folder, frames,
#: class_names) -> [paths]``.
OUTPUT_EXTRAS = Registry(
    'output extra', scope='mmxai', locations=['mmxai.outputs'])
