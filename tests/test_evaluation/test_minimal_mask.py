"""Minimal mask (REVEX) on the planted-answer model, where the answer is
known: the decision needs the whole planted region and nothing else."""
import math

import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from mmxai.errors import MMXAIError
from mmxai.evaluation import ExplainedBatch, MaskIoU, MinimalMask, minimal_mask
from mmxai.explainers import build_explainer
from mmxai.registry import METRICS
from mmxai.testing.coverage import ModelSnapshot
from planted_model import FRAMES, REGION, SIZE, planted_inputs, planted_model

#: cells of 1 frame x 8 rows x 2 columns tile REGION exactly: 512 units,
#: 12 of them in REGION
CELL = (1, 8, 2)
UNITS = FRAMES * (SIZE // 8) * (SIZE // 2)
IN_REGION = 12


def region_map():
    m = torch.zeros(1, 1, FRAMES, SIZE, SIZE)
    t0, t1, h0, h1, w0, w1 = REGION
    m[..., t0:t1, h0:h1, w0:w1] = 1.0
    return m


@pytest.fixture(scope='module')
def planted():
    """Class 0 leads by one logit on the clip (p = 0.73); one cell of the
    region (sum of x_0 about 16 over 8192 voxels, gain 2000) moves the
    margin by about 8 logits, so the decision needs every region cell."""
    model = planted_model()
    with torch.no_grad():
        model.cls_head.fc_cls.bias[1] -= 1.0
    return model, planted_inputs()


def run(planted, maps, **kw):
    model, x = planted
    kw = dict(dict(unit='cell', cell_size=CELL, steps=UNITS,
                   baseline='fade', batch_size=64), **kw)
    return minimal_mask(model, x, maps, 0, **kw)


def test_insertion_needs_the_region(planted):
    share = IN_REGION / UNITS  # the region's share of the clip
    out = run(planted, region_map(), thresholds=(0.5, 0.9))
    assert out.shape == (1, 2)
    assert torch.allclose(out, torch.full((1, 2), share))
    cls = run(planted, region_map(), criterion='class')
    assert cls.shape == (1, 1) and float(cls) == pytest.approx(share)
    # unequal cells (rows 0-24 and 24-32): the share counts voxels, the
    # region needs the three 24-row cells of frames 2-4, not 3 of 16 units
    out = run(planted, region_map(), criterion='class', cell_size=(1, 24, 32),
              steps=16)
    assert float(out) == pytest.approx(3 * 24 * 32 / (FRAMES * SIZE * SIZE))
    # region ranked last: all units are needed
    assert float(run(planted, 1 - region_map(), criterion='class',
                     steps=UNITS // 4)) == 1.0
    # REVEX's absolute threshold: 0.99 is above the clip's own 0.73
    assert math.isnan(float(run(planted, region_map(), thresholds=(0.99, ),
                                relative=False, steps=UNITS // 4)))


def test_deletion_one_region_cell_flips_it(planted):
    out = run(planted, region_map(), mode='deletion', criterion='class')
    assert float(out) == pytest.approx(1 / UNITS)
    out = run(planted, 1 - region_map(), mode='deletion',
              thresholds=(0.5, ))
    # the 500 outside units first, then the first region unit
    assert float(out) == pytest.approx((UNITS - IN_REGION + 1) / UNITS)


def test_stops_at_the_first_chunk_that_decides(planted):
    model, x = planted
    snap = ModelSnapshot(model)
    calls = []
    handle = model.backbone.register_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]))
    try:
        out = run(planted, region_map(), criterion='class', batch_size=5)
    finally:
        handle.remove()
    assert float(out) == pytest.approx(IN_REGION / UNITS)
    # the clean clip, then steps 0-4, 5-9, 10-14 (step 12 decides)
    assert calls == [1, 5, 5, 5]
    assert snap.changes() == []


def test_metric_path_with_loco_maps(planted):
    """LOCO maps of the planted model through the registered metrics: the
    minimal mask is the region's share, and the region's share of top
    voxels is exactly the ground-truth region (IoU 1)."""
    model, x = planted
    explainer = build_explainer(dict(type='loco', segmentation='grid',
                                     grid=(FRAMES, SIZE // 8, SIZE // 2),
                                     baseline='mean', batch_size=256,
                                     progress=False), model)
    exp = explainer.attribute(x, 0)
    sample = ActionDataSample()
    sample.set_metainfo(dict(gt_mask=region_map()[0, 0].bool().numpy()))
    batch = ExplainedBatch(positions=[0], indices=[0], inputs=x,
                           data_samples=[sample], explanation=exp,
                           adapter=explainer.adapter)
    results = {}
    for cfg in (dict(type='mmxai.MinimalMask', thresholds=(0.9, ),
                     unit='cell', cell_size=CELL, steps=UNITS,
                     baseline='fade', batch_size=64),
                dict(type='mmxai.MinimalMask', criterion='class',
                     unit='cell', cell_size=CELL, steps=UNITS,
                     baseline='fade', batch_size=64),
                dict(type='mmxai.MaskIoU', top=IN_REGION / UNITS)):
        metric = METRICS.build(cfg)
        metric.feed(batch)
        metric.process({}, [])
        results.update(metric.evaluate(1))
    share = IN_REGION / UNITS
    assert results['mmxai/minimal_mask_0.9'] == pytest.approx(share)
    assert results['mmxai/minimal_mask_0.9_reached'] == 1.0
    assert results['mmxai/minimal_mask_class'] == pytest.approx(share)
    assert results['mmxai/mask_iou'] == pytest.approx(1.0)


def test_compute_metrics_skips_unreached():
    metric = MinimalMask(thresholds=(0.9, ))
    out = metric.compute_metrics([
        {'minimal_mask_0.9': 0.2}, {'minimal_mask_0.9': float('nan')},
        {'minimal_mask_0.9': 0.4}])
    assert out['minimal_mask_0.9'] == pytest.approx(0.3)
    assert out['minimal_mask_0.9_reached'] == pytest.approx(2 / 3)
    assert np.isnan(MinimalMask(criterion='class').compute_metrics(
        [{'minimal_mask_class': float('nan')}])['minimal_mask_class'])


def test_bad_options():
    with pytest.raises(MMXAIError):
        MinimalMask(mode='both')
    with pytest.raises(MMXAIError):
        MinimalMask(criterion='area')
    with pytest.raises(MMXAIError):
        MinimalMask(unit='pixel')
    with pytest.raises(MMXAIError):
        MinimalMask(baseline='noise')
    with pytest.raises(MMXAIError):
        MaskIoU(top=2)
