"""Surgical phase recognition metrics: functions and ``PhaseMetric`` for
``test_evaluator`` (``dict(type='mmxai.PhaseMetric')``).

Definitions (docs/surgical.md writes the rules out):

* frame accuracy; per-phase precision, recall and Jaccard (strict);
* their *relaxed* versions of the Cholec80 community's evaluation script
  (MATLAB ``Evaluate.m`` of the M2CAI/Cholec80 challenges, ported to Python
  in CAMMA's repositories): a 10 s boundary (``10 * fps`` frames) at both
  ends of each ground-truth phase segment where some errors count as
  correct: :func:`relaxed_phase_scores`;
* segmental edit score and F1@k (k = 10, 25, 50 % IoU) as in action
  segmentation (MS-TCN's ``eval.py``).

Averaging (as the papers using the script do): per-phase scores are
averaged over videos first (phases absent from a video's ground truth are
NaN there and skipped), then over phases; accuracy is the mean over videos;
edit score the mean over videos; F1@k pools true/false positives and false
negatives over all videos before computing F1 (MS-TCN). All values are
fractions in [0, 1] (the script prints percentages).
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

from ..errors import InputError
from ..registry import METRICS

__all__ = ['frame_accuracy', 'phase_scores', 'relaxed_phase_scores',
           'segments', 'edit_score', 'f1_counts', 'f1_at_k',
           'phase_report', 'PhaseMetric']


def _arrays(gt, pred):
    gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
    if gt.shape != pred.shape or gt.ndim != 1:
        raise InputError(f'phase metrics: ground truth {gt.shape} and '
                         f'prediction {pred.shape} must be two sequences of '
                         'one label per frame of the same length')
    return gt, pred


def frame_accuracy(gt: Sequence[int], pred: Sequence[int]) -> float:
    """Share of frames whose predicted phase is the ground truth."""
    gt, pred = _arrays(gt, pred)
    return float(np.mean(gt == pred)) if len(gt) else float('nan')


def phase_scores(gt, pred, num_phases: int = 7) -> Dict[str, np.ndarray]:
    """Strict per-phase ``precision``, ``recall``, ``jaccard`` (``[P]``).

    A phase absent from the ground truth gets NaN (as in the relaxed
    script); precision is NaN when the phase is never predicted.
    """
    gt, pred = _arrays(gt, pred)
    out = {k: np.full(num_phases, np.nan) for k in
           ('precision', 'recall', 'jaccard')}
    for p in range(num_phases):
        g, q = gt == p, pred == p
        if not g.any():
            continue
        inter = float(np.sum(g & q))
        out['recall'][p] = inter / g.sum()
        out['jaccard'][p] = inter / np.sum(g | q)
        if q.any():
            out['precision'][p] = inter / q.sum()
    return out


def _runs(mask: np.ndarray):
    """``(start, end_exclusive)`` of each run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def relaxed_phase_scores(gt, pred, fps: float, boundary_s: float = 10.0,
                         num_phases: int = 7) -> Dict[str, object]:
    """The Cholec80 evaluation script's relaxed-boundary scores.

    Phases are 0-based here (the script's phase ``k`` is ``k - 1``). With
    ``d = pred - gt`` and ``t = min(boundary_s * fps, segment length)``,
    for each ground-truth segment of phase p (script numbering 1..7):

    * p in 4, 5: in its first t frames ``d == -1`` is correct (late
      transition from the phase before); in its last t frames ``d in
      (1, 2)`` is correct (early transition, phase 5 may be skipped);
    * p in 6, 7: first t frames ``d in (-1, -2)``, last t ``d in (1, 2)``;
    * otherwise: first t ``d == -1``, last t ``d == 1``.

    Then per phase, over the union U of its ground-truth and predicted
    frames, ``tp`` = frames of U whose (relaxed) difference is 0: Jaccard
    ``tp / |U|``, precision ``tp / #pred``, recall ``tp / #gt``, each
    clipped to 1 (the script clips at 100 %); a phase absent from the
    ground truth is NaN; ``tp > 0`` with no prediction gives precision 1
    (the script's ``Inf`` clipped), ``tp == 0`` NaN. ``accuracy``: share
    of frames whose relaxed difference is 0.
    """
    gt, pred = _arrays(gt, pred)
    diff = pred - gt
    upd = diff.copy()
    t0 = int(round(boundary_s * fps))
    for p in range(num_phases):
        k = p + 1  # the script's numbering
        if k in (4, 5):
            early, late = (-1, ), (1, 2)
        elif k in (6, 7):
            early, late = (-1, -2), (1, 2)
        else:
            early, late = (-1, ), (1, )
        for s, e in _runs(gt == p):
            t = min(t0, e - s)
            head = upd[s:s + t]
            head[np.isin(head, early)] = 0
            tail = upd[e - t:e]
            tail[np.isin(tail, late)] = 0
    out = {k: np.full(num_phases, np.nan) for k in
           ('precision', 'recall', 'jaccard')}
    for p in range(num_phases):
        g, q = gt == p, pred == p
        if not g.any():
            continue
        union = g | q
        tp = float(np.sum(upd[union] == 0))
        out['jaccard'][p] = min(1.0, tp / union.sum())
        out['recall'][p] = min(1.0, tp / g.sum())
        if q.any():
            out['precision'][p] = min(1.0, tp / q.sum())
        elif tp > 0:
            out['precision'][p] = 1.0
    out['accuracy'] = float(np.mean(upd == 0)) if len(gt) else float('nan')
    return out


def segments(labels: Sequence[int]):
    """``(label, start, end_exclusive)`` of each run of one label."""
    labels = np.asarray(labels)
    if not len(labels):
        return []
    cut = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [len(labels)]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def edit_score(gt, pred) -> float:
    """Segmental edit score: ``1 - Levenshtein(segment labels) / max(
    number of segments)`` (MS-TCN's ``edit_score``, as a fraction)."""
    a = [s[0] for s in segments(pred)]
    b = [s[0] for s in segments(gt)]
    if not a and not b:
        return 1.0
    d = np.zeros((len(a) + 1, len(b) + 1))
    d[:, 0] = np.arange(len(a) + 1)
    d[0, :] = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1,
                          d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    return float(1 - d[-1, -1] / max(len(a), len(b)))


def f1_counts(gt, pred, overlap: float):
    """``(tp, fp, fn)`` of predicted segments at IoU ``overlap`` (0-1):
    each predicted segment is matched to the same-label ground-truth segment
    of largest IoU; a hit if IoU >= overlap and that segment is not taken."""
    ps, gs = segments(pred), segments(gt)
    hits = np.zeros(len(gs), bool)
    tp = fp = 0
    for lab, s, e in ps:
        ious = np.array([(min(e, ge) - max(s, gs_)) / (max(e, ge) -
                                                      min(s, gs_))
                         if gl == lab else 0.0 for gl, gs_, ge in gs])
        j = int(np.argmax(ious)) if len(ious) else -1
        if j >= 0 and ious[j] >= overlap and not hits[j]:
            tp += 1
            hits[j] = True
        else:
            fp += 1
    return tp, fp, int(len(gs) - hits.sum())


def _f1(tp, fp, fn) -> float:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def f1_at_k(gt, pred, overlap: float) -> float:
    """F1 of one video at IoU ``overlap`` (0-1)."""
    return _f1(*f1_counts(gt, pred, overlap))


def phase_report(videos: Sequence[tuple], fps: float, num_phases: int = 7,
                 boundary_s: float = 10.0,
                 overlaps: Sequence[float] = (0.1, 0.25, 0.5)
                 ) -> Dict[str, float]:
    """All metrics over ``videos`` (``[(gt, pred), ...]`` at ``fps``),
    averaged as the papers do (module docstring)."""
    if not videos:
        raise InputError('phase metrics: no videos to evaluate')
    strict, relaxed, acc, racc, edit = [], [], [], [], []
    counts = np.zeros((len(overlaps), 3))
    for gt, pred in videos:
        acc.append(frame_accuracy(gt, pred))
        strict.append(phase_scores(gt, pred, num_phases))
        r = relaxed_phase_scores(gt, pred, fps, boundary_s, num_phases)
        relaxed.append(r)
        racc.append(r['accuracy'])
        edit.append(edit_score(gt, pred))
        for i, o in enumerate(overlaps):
            counts[i] += f1_counts(gt, pred, o)
    out = dict(accuracy=float(np.mean(acc)),
               relaxed_accuracy=float(np.mean(racc)),
               edit=float(np.mean(edit)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # all-NaN phases
        for name, per in (('', strict), ('relaxed_', relaxed)):
            for key in ('precision', 'recall', 'jaccard'):
                by_phase = np.nanmean(np.stack([v[key] for v in per]), 0)
                out[name + key] = float(np.nanmean(by_phase))
                for p in range(num_phases):
                    out[f'{name}{key}_{p}'] = float(by_phase[p])
    for i, o in enumerate(overlaps):
        out[f'F1@{int(round(o * 100))}'] = _f1(*counts[i])
    return out


@METRICS.register_module()
class PhaseMetric(BaseMetric):
    """Phase metrics over whole videos for ``test_evaluator`` / ``val``.

    Each data sample is one window (``mmxai.Cholec80Dataset``); its
    prediction (argmax of ``pred_score``) is the phase at its label frame.
    Samples are grouped by ``video_id`` and ordered by ``label_frame``
    (both from ``PackActionInputs``' ``meta_keys``), so each video is the
    sequence of its windows' predictions on the dataset's grid.

    Args:
        num_phases: number of phases (Cholec80: 7).
        fps: rate of that grid (the dataset's ``sample_fps``); ``None``:
            from the samples' ``label_time`` (median step).
        boundary_s: relaxed boundary in seconds (10 in the script).
        overlaps: IoU thresholds of F1@k.
    """
    default_prefix = 'phase'

    def __init__(self, num_phases: int = 7, fps: Optional[float] = None,
                 boundary_s: float = 10.0,
                 overlaps: Sequence[float] = (0.1, 0.25, 0.5),
                 per_phase: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_phases = num_phases
        self.fps = fps
        self.boundary_s = boundary_s
        self.overlaps = tuple(overlaps)
        self.per_phase = per_phase

    def process(self, data_batch, data_samples: Sequence) -> None:
        for s in data_samples:
            get = s.get if isinstance(s, dict) else (
                lambda k, d=None, s=s: getattr(s, k, d))
            vid = get('video_id')
            frame = get('label_frame')
            if vid is None or frame is None:
                raise InputError(
                    "PhaseMetric needs 'video_id' and 'label_frame' in the "
                    "samples: add them to PackActionInputs' meta_keys (see "
                    'configs/surgical/_base_/cholec80.py)')
            score = get('pred_score')
            label = get('gt_label')
            self.results.append(dict(
                video=str(vid), frame=int(frame),
                time=float(get('label_time', float('nan'))),
                pred=int(np.asarray(score.cpu() if hasattr(score, 'cpu')
                                    else score).argmax()),
                gt=int(np.asarray(label.cpu() if hasattr(label, 'cpu')
                                  else label).reshape(-1)[0])))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        by_video = defaultdict(dict)
        for r in results:
            by_video[r['video']][r['frame']] = r
        videos, steps = [], []
        for vid in sorted(by_video):
            rows = [by_video[vid][f] for f in sorted(by_video[vid])]
            videos.append((np.array([r['gt'] for r in rows]),
                           np.array([r['pred'] for r in rows])))
            steps.extend(np.diff([r['time'] for r in rows]))
        fps = self.fps
        if fps is None:
            steps = [s for s in steps if np.isfinite(s) and s > 0]
            fps = 1.0 / float(np.median(steps)) if steps else 1.0
        out = phase_report(videos, fps, self.num_phases, self.boundary_s,
                           self.overlaps)
        if not self.per_phase:
            out = {k: v for k, v in out.items()
                   if not k.rsplit('_', 1)[-1].isdigit()}
        return out
