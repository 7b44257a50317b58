"""Mean-gradient CAMs warn (once per explainer, MMLogger) on a phase head
that keeps the spatial grid; element-wise CAMs and a globally pooling head
do not."""
import logging
import os.path as osp

import pytest
from mmengine.logging import MMLogger

from mmxai.apis import init_recognizer
from mmxai.explainers import build_explainer

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/surgical/resnet18s2_tcn_procedures.py')


class _Catch(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        if 'keeps the spatial grid' in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.fixture(scope='module')
def models():
    grid = init_recognizer(CONFIG)
    avg = init_recognizer(CONFIG, cfg_options={
        'model.cls_head.spatial_pool': 'avg'})
    return grid, avg


@pytest.mark.parametrize('method,warns', [
    ('gradcam', True), ('gradcam++', True), ('xgradcam', True),
    ('smooth_gradcam++', True), ('hirescam', False), ('layercam', False),
    ('grad_cam_element_wise', False), ('saliency', False)])
def test_warning_on_grid_head(models, method, warns):
    grid, avg = models
    catch = _Catch()
    logger = MMLogger.get_current_instance()
    logger.addHandler(catch)
    try:
        build_explainer(method, grid)
        assert len(catch.messages) == int(warns), catch.messages
        if warns:
            assert catch.messages[0].startswith(f'{method}: the head '
                                                'CausalMSTCNHead')
            assert 'hirescam' in catch.messages[0]
        build_explainer(method, avg)
        assert len(catch.messages) == int(warns)  # the avg head: none
    finally:
        logger.removeHandler(catch)
