"""IoU of the thresholded map with a ground-truth mask (REVEX)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from mmxai.errors import MMXAIError
from mmxai.evaluation import ExplainedBatch, MaskIoU, mask_iou, threshold_map
from mmxai.registry import METRICS


def small_case():
    """A [2, 4, 4] map and mask; minmax(map) = map (min 0, max 1)."""
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0:2] = 1.0
    maps[0, 1, 0] = 0.95
    maps[1, 3, 3] = 0.6
    gt = torch.zeros(2, 4, 4, dtype=torch.bool)
    gt[0, 0, 0:2] = True
    gt[1, 3, 3] = True
    return maps, gt


def test_hand_computed():
    maps, gt = small_case()
    # > 0.9: (0,0,0), (0,0,1), (0,1,0); I = 2, U = 4
    assert mask_iou(maps, gt) == pytest.approx(0.5)
    # > 0.5 adds (1,3,3): I = 3, U = 4
    assert mask_iou(maps, gt, threshold=0.5) == pytest.approx(0.75)
    # the top 2 of 32 voxels: the two 1.0 (ties by position); I = 2, U = 3
    assert threshold_map(maps, top=2 / 32).sum() == 2
    assert mask_iou(maps, gt, top=2 / 32) == pytest.approx(2 / 3)
    # stretching: scale and offset do not matter
    assert mask_iou(3 * maps - 5, gt) == pytest.approx(0.5)
    assert mask_iou(maps, maps > 0.9) == pytest.approx(1.0)
    assert mask_iou(torch.ones(2, 4, 4), gt) == 0.0  # constant: nothing


def test_bad_inputs():
    maps, gt = small_case()
    with pytest.raises(MMXAIError):
        mask_iou(maps, torch.zeros_like(gt))
    with pytest.raises(MMXAIError):
        mask_iou(maps, gt[:1])
    with pytest.raises(MMXAIError):
        MaskIoU(threshold=1.5)
    with pytest.raises(MMXAIError):
        MaskIoU(top=0)


def test_metric_on_an_explained_batch():
    """Through the registered metric: per sample the mean over the views
    with a mask; a sample without ground truth is skipped."""
    maps, gt = small_case()
    other = torch.zeros(2, 4, 4)
    other[1, 3, 3] = 1.0  # view 2: > 0.9 only (1,3,3): I = 1, U = 3
    batch_maps = torch.stack([torch.stack([maps, other]),
                              torch.stack([maps, maps])])  # [2, 2, 2, 4, 4]
    samples = [ActionDataSample(), ActionDataSample()]
    samples[0].set_metainfo(dict(gt_mask=gt.numpy()))
    batch = ExplainedBatch(
        positions=[0, 1], indices=[5, 6], inputs=torch.zeros(2, 1),
        data_samples=samples, explanation=SimpleNamespace(maps=batch_maps),
        adapter=None)
    metric = METRICS.build(dict(type='mmxai.MaskIoU'))
    metric.feed(batch)
    metric.process({}, [])
    result = metric.evaluate(1)
    assert result['mmxai/mask_iou'] == pytest.approx(np.mean([0.5, 1 / 3]))
