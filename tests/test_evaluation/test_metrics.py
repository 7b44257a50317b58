"""Runner-free metric functions, and the metric classes on one batch."""
import numpy as np
import pytest
import torch

from tiny_models import build, clip_batch, i3d_cfg, preprocess
from mmxai.adapters import build_adapter
from mmxai.errors import MMXAIError
from mmxai.evaluation import (AverageDrop, DeletionInsertionAUC,
                              ExplainedBatch, PointingGame, auc,
                              average_drop, deletion_insertion_curve,
                              gaussian_blur, load_ground_truth,
                              pointing_game, temporal_grounding)
from mmxai.evaluation.functional import pixel_ranks, unit_labels
from mmxai.explainers import build_explainer


@pytest.fixture(scope='module')
def setup():
    model = build(i3d_cfg())
    data = preprocess(model, clip_batch(batch=2, views=2, seed=3,
                                        labels=[1, 2]))
    return model, data['inputs'], data['data_samples']


def _probs(model, inputs, targets):
    with torch.no_grad():
        p = build_adapter(model).scores(inputs).softmax(-1)
    return p[torch.arange(len(targets)), torch.as_tensor(targets)]


def test_auc_trapezoid():
    assert float(auc(torch.tensor([1.0, 1.0, 1.0]))) == pytest.approx(1.0)
    assert float(auc(torch.tensor([1.0, 0.0]))) == pytest.approx(0.5)
    # (0.8 + 0.4 + 0.2 - 0.4 - 0.1) / 2
    assert float(auc(torch.tensor([0.8, 0.4, 0.2]))) == pytest.approx(0.45)


def test_cells_and_ranks():
    labels = unit_labels((1, 1, 4, 8, 8), 'cell', (2, 4, 4))
    assert int(labels.max()) + 1 == 2 * 2 * 2
    maps = torch.zeros(1, 1, 4, 8, 8)
    maps[0, 0, 2:, 4:, :4] = 1.0  # cell (t=1, h=1, w=0): id 6
    ranks, counts = pixel_ranks(maps, labels)
    assert int(counts) == 8
    assert (ranks[0, 0, 2:, 4:, :4] == 0).all()
    assert int(ranks.max()) == 7


def test_deletion_insertion_endpoints_and_batching(setup):
    model, inputs, _ = setup
    maps = torch.rand(2, 2, 8, 32, 32, generator=torch.Generator()
                      .manual_seed(0))
    targets = torch.tensor([1, 3])
    curve, area = deletion_insertion_curve(
        model, inputs, maps, targets, steps=6, cell_size=(1, 8, 8),
        batch_size=7, mode='deletion')
    assert curve.shape == (2, 7) and area.shape == (2, )
    orig = _probs(model, inputs, targets)
    faded = _probs(model, torch.zeros_like(inputs), targets)
    torch.testing.assert_close(curve[:, 0], orig, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(curve[:, -1], faded, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(area, auc(curve))
    ins, _ = deletion_insertion_curve(
        model, inputs, maps, targets, steps=6, cell_size=(1, 8, 8),
        batch_size=2, mode='insertion')
    torch.testing.assert_close(ins[:, 0], faded, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ins[:, -1], orig, atol=1e-5, rtol=1e-4)
    # chunking does not change the curve
    one, _ = deletion_insertion_curve(
        model, inputs, maps, targets, steps=6, cell_size=(1, 8, 8),
        batch_size=1, mode='deletion')
    torch.testing.assert_close(one, curve, atol=1e-5, rtol=1e-4)


def test_deletion_step_removes_top_cells(setup):
    """Step 1 of 4 with 4 cells per frame... removes exactly the top quarter
    of cells: the clip scored equals the manually faded one."""
    model, inputs, _ = setup
    x = inputs[:1]
    maps = torch.zeros(1, 2, 8, 32, 32)
    maps[:, :, :, :16, :16] = 1.0  # top-left quadrant of every frame
    curve, _ = deletion_insertion_curve(
        model, x, maps, 0, steps=4, cell_size=(8, 16, 16), batch_size=5)
    manual = x.clone()
    manual[..., :16, :16] = 0
    assert float(curve[0, 1]) == pytest.approx(
        float(_probs(model, manual, [0])[0]), abs=1e-5)


def test_supervoxels_and_blur_baseline(setup):
    model, inputs, _ = setup
    video = build_adapter(model).to_video(inputs)
    labels = unit_labels((2, 2, 8, 32, 32), 'supervoxel', video=video,
                         n_segments=20)
    assert labels.shape == (2, 2, 8, 32, 32)
    assert int(labels[0, 0].max()) + 1 == len(torch.unique(labels[0, 0]))
    curve, area = deletion_insertion_curve(
        model, inputs, torch.rand(2, 8, 32, 32), 1, steps=3,
        unit='supervoxel', baseline='blur', blur_sigma=2.0, n_segments=20)
    assert curve.shape == (2, 4) and ((area >= 0) & (area <= 1)).all()
    const = torch.full((1, 3, 2, 9, 9), 0.7)
    torch.testing.assert_close(gaussian_blur(const, 3.0), const)
    noise = torch.randn(1, 3, 2, 16, 16)
    assert gaussian_blur(noise, 2.0).std() < noise.std() / 2


def test_average_drop(setup):
    model, inputs, _ = setup
    drop, inc = average_drop(model, inputs, torch.ones(2, 2, 8, 32, 32),
                             [1, 2])
    torch.testing.assert_close(drop, torch.zeros(2))
    assert not inc.any()
    drop0, _ = average_drop(model, inputs, torch.zeros(2, 8, 32, 32), [1, 2],
                            blur_sigma=3.0)
    video = build_adapter(model).to_video(inputs)
    blurred = build_adapter(model).from_video(gaussian_blur(video, 3.0))
    y, o = _probs(model, inputs, [1, 2]), _probs(model, blurred, [1, 2])
    torch.testing.assert_close(
        drop0, 100 * (y - o).clamp_min(0) / y, atol=1e-4, rtol=1e-4)


def test_pointing_game_and_temporal_grounding():
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 10:14, 10:14] = True
    masks[2, 0:4, 0:4] = True
    maps = torch.zeros(3, 32, 32)
    maps[0, 12, 12] = 1.0   # inside: hit
    maps[1, 5, 5] = 1.0     # frame 1 not annotated: not counted
    maps[2, 20, 20] = 1.0   # far: miss
    assert pointing_game(maps, masks, tolerance=2) == (1, 1)
    maps[2, 20, 20] = 0
    maps[2, 5, 5] = 1.0     # 2.8 px from the mask
    assert pointing_game(maps, masks, tolerance=1) == (1, 1)
    assert pointing_game(maps, masks, tolerance=3) == (2, 0)
    vol = torch.zeros(3, 32, 32)
    vol[0, 11, 11] = 2.0
    assert pointing_game(vol, masks, 0, mode='volume') == (1, 0)
    assert temporal_grounding(maps, torch.tensor([False, True, False])) \
        is False
    heavy = torch.zeros(3, 4, 4)
    heavy[1] = 1
    assert temporal_grounding(heavy, torch.tensor([1]))  # indices work
    with pytest.raises(MMXAIError):
        pointing_game(maps, masks[:2])


def test_ground_truth_from_video_coordinates(tmp_path):
    full = np.zeros((10, 40, 40), bool)
    full[4, 0:20, 20:40] = True  # top-right quadrant in frame 4
    np.savez(tmp_path / 'gt.npz', mask=full, active_frames=np.array([4, 5]))
    meta = dict(gt_mask_path=str(tmp_path / 'gt.npz'),
                frame_inds=np.array([3, 4, 5, 6]),
                crop_quadruple=np.array([0.5, 0.0, 0.5, 0.5]))  # x, y, w, h
    masks, frames = load_ground_truth(meta, (1, 4, 8, 8))
    assert masks.shape == (1, 4, 8, 8)
    assert masks[0, 1].all() and not masks[0, [0, 2, 3]].any()
    assert frames.tolist() == [[False, True, True, False]]


def test_metric_classes_on_an_explained_batch(setup):
    model, inputs, samples = setup
    explainer = build_explainer('gradcam', model)
    exp = explainer.attribute(inputs, 'gt', samples)
    for ds in samples:
        mask = np.zeros((8, 32, 32), bool)
        mask[:, 8:24, 8:24] = True
        ds.set_metainfo(dict(gt_mask=mask, gt_frames=np.arange(8) < 4))
    batch = ExplainedBatch(positions=[0, 1], indices=[0, 1], inputs=inputs,
                           data_samples=samples, explanation=exp,
                           adapter=explainer.adapter)

    results = {}
    for metric in (DeletionInsertionAUC(steps=4, cell_size=(1, 8, 8)),
                   AverageDrop(), PointingGame(tolerance=0)):
        metric.feed(batch)
        metric.process({}, [])
        results.update(metric.evaluate(2))
    curve, area = deletion_insertion_curve(
        model, inputs, exp.maps, exp.targets, steps=4, cell_size=(1, 8, 8),
        mode='insertion')
    assert results['mmxai/insertion_auc'] == pytest.approx(
        float(area.mean()), abs=1e-6)
    assert 0 <= results['mmxai/deletion_auc'] <= 1
    assert results['mmxai/average_drop'] >= 0
    # per class (labels 1, 2), 2 views x 8 frames of trials each
    hits = [pointing_game(exp.maps[i, v], torch.as_tensor(
        samples[i].gt_mask), 0) for i in range(2) for v in range(2)]
    per_class = [sum(h for h, _ in hits[2 * i:2 * i + 2]) / 16
                 for i in range(2)]
    assert results['mmxai/pointing_game'] == pytest.approx(
        np.mean(per_class))
    assert 0 <= results['mmxai/temporal_grounding'] <= 1


def test_bad_options():
    with pytest.raises(MMXAIError):
        DeletionInsertionAUC(unit='pixel')
    with pytest.raises(MMXAIError):
        DeletionInsertionAUC(baseline='noise')
    with pytest.raises(MMXAIError):
        DeletionInsertionAUC(modes=('both', ))
