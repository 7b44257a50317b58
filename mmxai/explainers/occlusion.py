"""3D occlusion: a sliding spatio-temporal occluder (Zeiler & Fergus 2014;
the "SOS" video variant of REVEX)."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..baselines import make_baseline
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .options import SCORES, check_choice, check_positive, triple
from .progress import Progress
from .targets import TargetSpec


def window_starts(size: int, window: int, stride: int) -> List[int]:
    """Start indices of a window sliding over ``size`` (Captum's rule:
    ``ceil((size - window) / stride) + 1`` positions, the last clipped)."""
    if window > size:
        raise MMXAIError(f'occlusion window {window} exceeds the input size '
                         f'{size}')
    count = int(math.ceil((size - window) / stride)) + 1
    return [i * stride for i in range(count)]


@EXPLAINERS.register_module()
class Occlusion3D(BaseExplainer):
    """Slide a ``window`` (t, h, w) with ``stride`` over each view; a voxel's
    value is the mean drop ``s_c(x) - s_c(x_occluded)`` over the windows
    that cover it (the same definition and window positions as Captum's
    ``Occlusion``, all colour channels occluded together).

    Scores: softmax probability of the target (``score='prob'``, default)
    or its pre-softmax score (``'logit'``), view-averaged (each view is
    occluded on its own, see :class:`ViewScorer`).

    Args:
        window: occluder size ``(t, h, w)``; default ``T/4 x H/7 x W/7``
            (REVEX), rounded up.
        stride: default half the window (rounded up).
        baseline: ``'mean'`` (0 after normalisation), ``'blur'``,
            ``'temporal_mean'`` (the clip's mean frame) or a number
            (normalised units).
        batch_size: occluded clips per forward pass.
    """
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module,
                 window: Optional[Sequence[int]] = None,
                 stride: Optional[Sequence[int]] = None, baseline='mean',
                 score: str = 'prob', batch_size: int = 8,
                 blur_sigma: Optional[Sequence[float]] = None,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_positive('batch_size', batch_size)
        check_choice('score', score, SCORES)
        self.window = None if window is None else triple('window', window,
                                                         (1, 1, 1))
        self.stride = None if stride is None else triple('stride', stride,
                                                         (1, 1, 1))
        self.baseline, self.score = baseline, score
        self.batch_size, self.blur_sigma = int(batch_size), blur_sigma
        self.progress = progress

    def settings(self) -> Dict[str, Any]:
        return dict(window=self.window and list(self.window),
                    stride=self.stride and list(self.stride),
                    baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor',
                    score=self.score, batch_size=self.batch_size)

    def geometry(self, t: int, h: int, w: int
                 ) -> Tuple[Tuple[int, ...], Tuple[int, ...], List[tuple]]:
        """``(window, stride, [(t0, h0, w0), ...])`` for a ``T x H x W``
        view."""
        window = self.window or (math.ceil(t / 4), math.ceil(h / 7),
                                 math.ceil(w / 7))
        stride = self.stride or tuple(max(1, math.ceil(k / 2))
                                      for k in window)
        for k, s, d in zip(window, stride, (t, h, w)):
            if s > k and k < d:
                raise MMXAIError(f'occlusion stride {s} is larger than the '
                                 f'window {k}: some voxels would be skipped')
        starts = [window_starts(d, k, s)
                  for d, k, s in zip((t, h, w), window, stride)]
        pos = [(a, b, c) for a in starts[0] for b in starts[1]
               for c in starts[2]]
        return window, stride, pos

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, self.score)
        video = scorer.video
        b_n, v_n, c_n, t, h, w = video.shape
        (wt, wh, ww), _, pos = self.geometry(t, h, w)
        raw = video.new_zeros((b_n, v_n, t, h, w), dtype=torch.float32)
        counts = torch.zeros((t, h, w), device=video.device)
        for a, b, c in pos:
            counts[a:a + wt, b:b + wh, c:c + ww] += 1
        bar = Progress(b_n * v_n * len(pos), 'occlusion', self.progress)
        with bar, torch.inference_mode():
            for bi in range(b_n):
                cls = int(targets[bi])
                for v in range(v_n):
                    x = video[bi, v]
                    base = make_baseline(x, self.baseline, self.blur_sigma)
                    clean = scorer.clean(bi, v)[cls]
                    acc = raw[bi, v]
                    for start, stop in batches(len(pos), self.batch_size):
                        chunk = pos[start:stop]
                        clips = x.expand(len(chunk), *x.shape).clone()
                        for i, (a, b, c) in enumerate(chunk):
                            sl = (slice(None), slice(a, a + wt),
                                  slice(b, b + wh), slice(c, c + ww))
                            clips[i][sl] = base[sl]
                        drop = clean - scorer(bi, v, clips)[:, cls]
                        for d, (a, b, c) in zip(drop.tolist(), chunk):
                            acc[a:a + wt, b:b + wh, c:c + ww] += d
                        bar.update(len(chunk))
                    acc /= counts
        return Attribution(raw, scores, targets,
                           extras={'num_windows': len(pos)},
                           probs=scorer.probs)
