"""Phase metrics on hand-made sequences whose answers were computed by hand
(the working is in the comments)."""
import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from mmxai.evaluation import (PhaseMetric, edit_score, f1_at_k,
                              frame_accuracy, phase_report, phase_scores,
                              relaxed_phase_scores)

NAN = float('nan')
# case A: gt 0 0 0 1 1 1 1 2 2 2 / pred 0 0 1 1 1 1 2 2 2 2
GT_A = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
PR_A = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_strict_scores_by_hand():
    assert frame_accuracy(GT_A, PR_A) == pytest.approx(0.8)  # frames 2, 6
    s = phase_scores(GT_A, PR_A, 7)
    # phase 0: gt {0,1,2} pred {0,1}; phase 1: gt {3..6} pred {2..5};
    # phase 2: gt {7,8,9} pred {6..9}
    np.testing.assert_allclose(s['precision'][:3], [1, 3 / 4, 3 / 4])
    np.testing.assert_allclose(s['recall'][:3], [2 / 3, 3 / 4, 1])
    np.testing.assert_allclose(s['jaccard'][:3], [2 / 3, 3 / 5, 3 / 4])
    assert np.isnan(s['jaccard'][3:]).all()  # absent from the ground truth


def test_relaxed_boundary_rules_by_hand():
    # case B (script phases 1, 2), fps 1, boundary 2 s -> t = 2 frames
    gt = [0] * 5 + [1] * 6
    pr = [0, 0, 0, 1, 1, 0, 0, 1, 1, 3, 1]
    # d = pred - gt: 0 0 0 1 1 -1 -1 0 0 2 0
    # segment of phase 1 (0..4): last 2 frames d == 1 -> 0 (early switch)
    # segment of phase 2 (5..10): first 2 frames d == -1 -> 0 (late
    # switch); its last 2 frames hold d = 2 (not +1): stays wrong
    r = relaxed_phase_scores(gt, pr, fps=1, boundary_s=2)
    assert r['accuracy'] == pytest.approx(10 / 11)
    assert frame_accuracy(gt, pr) == pytest.approx(6 / 11)
    # phase 2 (index 1): union {3..10} = 8 frames, 7 relaxed-correct
    assert r['jaccard'][1] == pytest.approx(7 / 8)
    assert r['jaccard'][0] == pytest.approx(1.0)  # union {0..6}, all 0
    # precision 7/5 and recall 7/6 exceed 1: clipped as the script does
    assert r['precision'][1] == 1 and r['recall'][1] == 1
    # predicted (frame 9) but absent from the ground truth: NaN
    assert np.isnan(r['jaccard'][3]) and np.isnan(r['precision'][3])
    # with a 10 s boundary the same errors are all inside it; d = 2 in the
    # last frames of a general phase is still not forgiven
    assert relaxed_phase_scores(gt, pr, 1)['accuracy'] == pytest.approx(
        10 / 11)


def test_relaxed_rule_is_asymmetric_per_phase():
    # script phases 4 -> 6 (5 skipped): +-2 at the boundaries is forgiven
    gt = [3] * 4 + [5] * 4
    pr = [3, 3, 5, 5, 3, 3, 5, 5]   # d: 0 0 2 2 -2 -2 0 0
    assert relaxed_phase_scores(gt, pr, 1, 2)['accuracy'] == 1.0
    # the same errors between general phases 1 -> 3 are not
    gt = [0] * 4 + [2] * 4
    pr = [0, 0, 2, 2, 0, 0, 2, 2]
    assert relaxed_phase_scores(gt, pr, 1, 2)['accuracy'] == 0.5
    # phase 4 (index 3) start: d = -2 is not forgiven there, only -1
    gt = [1] * 3 + [3] * 4
    pr = [1, 1, 1, 1, 3, 3, 3]      # d at frame 3: -2
    assert relaxed_phase_scores(gt, pr, 1, 2)['accuracy'] == \
        pytest.approx(6 / 7)
    # boundary in frames = boundary_s * fps: at 2 fps, 1 s is 2 frames
    gt = [0] * 6 + [1] * 6
    pr = [0, 0, 0, 1, 1, 1] + [1] * 6
    assert relaxed_phase_scores(gt, pr, 2, 1)['accuracy'] == \
        pytest.approx(11 / 12)       # only the last 2 of 3 forgiven


def test_edit_and_f1_by_hand():
    assert edit_score(GT_A, PR_A) == 1.0
    # pred segments 0 1 0 1 3 1 vs gt 0 1: 4 deletions / 6
    gt = [0] * 5 + [1] * 6
    pr = [0, 0, 0, 1, 1, 0, 0, 1, 1, 3, 1]
    assert edit_score(gt, pr) == pytest.approx(1 - 4 / 6)
    # case A IoUs: [0,2) vs [0,3) 2/3; [2,6) vs [3,7) 3/5; [6,10) vs
    # [7,10) 3/4
    for k in (0.1, 0.25, 0.5, 0.6):
        assert f1_at_k(GT_A, PR_A, k) == 1.0
    assert f1_at_k(GT_A, PR_A, 0.7) == pytest.approx(1 / 3)  # 1 tp 2 fp 2 fn
    # case B at 0.5: pred [0,3) vs gt [0,5) 0.6 tp; [3,5) label 1 vs
    # [5,11) 0 fp; [5,7) label 0: best [0,5) IoU 0, fp; [7,9) 2/6 fp;
    # [9,10) label 3 fp; [10,11) 1/6 fp -> tp 1 fp 5 fn 1: P 1/6 R 1/2
    assert f1_at_k(gt, pr, 0.5) == pytest.approx(2 * (1 / 6) * (1 / 2) /
                                                 (1 / 6 + 1 / 2))


def test_report_averages_videos_then_phases():
    # video 1: case A; video 2: all right
    v2 = ([0, 0, 1, 1], [0, 0, 1, 1])
    rep = phase_report([(GT_A, PR_A), v2], fps=1, boundary_s=2)
    assert rep['accuracy'] == pytest.approx((0.8 + 1) / 2)
    # jaccard per phase over videos: p0 (2/3 + 1)/2, p1 (3/5 + 1)/2,
    # p2 3/4 (video 2 lacks it); then the mean of the three
    want = ((2 / 3 + 1) / 2 + (3 / 5 + 1) / 2 + 3 / 4) / 3
    assert rep['jaccard'] == pytest.approx(want)
    assert rep['F1@50'] == 1.0 and rep['edit'] == 1.0


def test_registered_metric_groups_windows_by_video():
    metric = PhaseMetric(fps=1, boundary_s=2, per_phase=True)
    samples = []
    for vid, gt, pr in (('video01', GT_A, PR_A), ('video02', [0, 1], [0, 1])):
        order = np.random.default_rng(0).permutation(len(gt))
        for i in order:  # any order: sorted by label_frame
            s = ActionDataSample().set_gt_label(gt[i])
            s.set_pred_score(torch.eye(7)[pr[i]])
            s.set_metainfo(dict(video_id=vid, label_frame=int(i) * 25,
                                label_time=float(i)))
            samples.append(s.to_dict())
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    assert out['phase/accuracy'] == pytest.approx((0.8 + 1) / 2)
    assert out['phase/jaccard_0'] == pytest.approx((2 / 3 + 1) / 2)
    assert 'phase/relaxed_jaccard' in out and 'phase/F1@10' in out
