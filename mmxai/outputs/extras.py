"""Method-specific outputs, found by registration in ``OUTPUT_EXTRAS``
under the method's registered name (``Explanation.method``).

A writer takes ``(explanation, folder, frames, class_names)``: the
explanation of one sample, the folder to write into, uint8 frames
``[T, H, W, 3]`` of view 0 as the model saw it (or None) and the class
names; it returns the paths it wrote.
"""
import os.path as osp
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..registry import OUTPUT_EXTRAS

__all__ = ['extras_writer', 'write_cfp_figures']


def extras_writer(method: str) -> Optional[Callable]:
    """The registered extras writer of ``method``, or None."""
    return OUTPUT_EXTRAS.get(method) if method in OUTPUT_EXTRAS else None


@OUTPUT_EXTRAS.register_module(name='cfp')
def write_cfp_figures(explanation, folder: str,
                      frames: Optional[np.ndarray] = None,
                      class_names: Optional[Sequence[str]] = None,
                      sample: int = 0, view: int = 0) -> List[str]:
    """Class Feature Pyramid: ``cfp_graph.json`` and ``cfp_pyramid.png``
    (sample ``sample``, view ``view``; frames default to grey)."""
    from ..visualization.cfp_figure import (save_cfp_graph_json,
                                            save_pyramid_figure)
    graph = explanation.extras['cfp_graph'][sample]
    tubes = {k: v[sample, view] for k, v in
             explanation.extras['cfp_tubes'].items()}
    paths = [save_cfp_graph_json(osp.join(folder, 'cfp_graph.json'), graph)]
    if frames is None:
        t, h, w = explanation.maps.shape[2:]
        frames = np.full((t, h, w, 3), 128, np.uint8)
    label = None
    if class_names and graph['class'] < len(class_names):
        label = class_names[graph['class']]
    paths.append(save_pyramid_figure(
        osp.join(folder, 'cfp_pyramid.png'), frames, graph, tubes,
        class_name=label))
    return paths
