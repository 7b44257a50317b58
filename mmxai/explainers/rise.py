"""3D RISE: randomised input sampling over space and time (Petsiuk et al.
2018, adapted to video as in REVEX, Gaya-Morey et al. 2024)."""
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..registry import EXPLAINERS
from ..baselines import make_baseline
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .masks import mask_cells, upsample_shifted
from .options import SCORES, check_choice, check_positive, triple
from .progress import Progress
from .targets import TargetSpec


@EXPLAINERS.register_module()
class RISE3D(BaseExplainer):
    """``S_c(t,h,w) = 1/(N p) sum_i s_c(x . m_i + b . (1 - m_i)) m_i(t,h,w)``.

    Keep-masks ``m_i`` are random binary grids of ``cells`` (t, h, w) cells
    kept with probability ``p``, upsampled trilinearly with a random shift
    (cell borders fall anywhere). Masks are generated on the fly, one batch
    at a time, from cell grids and shifts drawn first from a seeded
    generator (a few hundred bytes per mask): memory does not grow with
    ``num_masks``, and the same seed gives the same map on any device and
    with any ``batch_size`` (also when a batch is halved after an
    out-of-memory error).

    The score ``s_c`` is the softmax probability of the view-averaged
    pre-softmax score (``score='prob'``, as in the RISE paper) or the
    pre-softmax score itself (``'logit'``). Each view is masked on its own
    (see :class:`ViewScorer`) and gets its own map.

    Args:
        num_masks: N masks per view.
        cells: low-resolution grid ``(t, h, w)`` (an int: the same for all).
        p: probability of keeping a cell.
        baseline: removal value: ``'mean'`` (0 after normalisation, RISE's
            own), ``'blur'`` (3D Gaussian blur), ``'temporal_mean'`` (the
            clip's mean frame) or a number.
        batch_size: perturbed clips per forward pass.
        all_classes: also accumulate the maps of every class at once
            (``scores^T @ masks``) into ``extras['class_maps']``
            ``[B, V, K, T, H, W]``; costs ``K`` maps of memory.
        seed: masks and shifts come from ``torch.Generator().manual_seed``.
        progress: ``True``/``False``/``None`` (after 2 s).
    """
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module, num_masks: int = 1000,
                 cells: Sequence[int] = (4, 7, 7), p: float = 0.5,
                 baseline='mean', score: str = 'prob', batch_size: int = 8,
                 all_classes: bool = False, seed: int = 0,
                 blur_sigma: Optional[Sequence[float]] = None,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_positive('num_masks', num_masks)
        check_positive('batch_size', batch_size)
        check_choice('score', score, SCORES)
        if not 0 < p <= 1:
            from ..errors import MMXAIError
            raise MMXAIError(f'p must be in (0, 1], got {p}')
        self.num_masks, self.cells, self.p = int(num_masks), triple(
            'cells', cells, (4, 7, 7)), float(p)
        self.baseline, self.score, self.batch_size = baseline, score, int(
            batch_size)
        self.all_classes, self.seed = bool(all_classes), int(seed)
        self.blur_sigma, self.progress = blur_sigma, progress

    def settings(self) -> Dict[str, Any]:
        return dict(num_masks=self.num_masks, cells=list(self.cells),
                    p=self.p, baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor',
                    score=self.score, batch_size=self.batch_size,
                    seed=self.seed)

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, self.score)
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        raw = video.new_zeros((b_n, v_n, t, h, w), dtype=torch.float32)
        class_maps = video.new_zeros(
            (b_n, v_n, scores.shape[1], t, h, w),
            dtype=torch.float32) if self.all_classes else None
        bar = Progress(b_n * v_n * self.num_masks, 'rise', self.progress)
        with bar, torch.inference_mode():
            for b in range(b_n):
                for v in range(v_n):
                    x = video[b, v]
                    base = make_baseline(x, self.baseline, self.blur_sigma)
                    delta = x - base
                    gen = torch.Generator().manual_seed(self.seed)
                    all_grids = torch.rand((self.num_masks, *self.cells),
                                           generator=gen) < self.p
                    all_shifts = torch.stack([
                        torch.randint(0, k, (self.num_masks, ),
                                      generator=gen)
                        for k in mask_cells((t, h, w), self.cells)], 1)
                    acc = raw.new_zeros((scores.shape[1] if self.all_classes
                                         else 1, t * h * w))
                    # one set of batch buffers, reused: the per-batch
                    # allocations do not depend on the number of masks
                    n_buf = min(self.batch_size, self.num_masks)
                    mask_buf = torch.empty((n_buf, t, h, w),
                                           device=x.device)
                    clip_buf = x.new_empty((n_buf, *x.shape))
                    for start, stop in batches(self.num_masks,
                                               self.batch_size):
                        masks = mask_buf[:stop - start]
                        upsample_shifted(all_grids[start:stop], (t, h, w),
                                         None, out=masks,
                                         shifts=all_shifts[start:stop])
                        clips = torch.mul(delta, masks[:, None].to(x.dtype),
                                          out=clip_buf[:stop - start])
                        clips.add_(base)
                        s = scorer(b, v, clips)  # [n, K]
                        if not self.all_classes:
                            s = s[:, targets[b]:targets[b] + 1]
                        acc.addmm_(s.t(), masks.flatten(1))
                        bar.update(stop - start)
                    acc /= self.num_masks * self.p
                    if self.all_classes:
                        class_maps[b, v] = acc.view(-1, t, h, w)
                        raw[b, v] = class_maps[b, v, targets[b]]
                    else:
                        raw[b, v] = acc.view(t, h, w)
        extras = {} if class_maps is None else {'class_maps': class_maps}
        return Attribution(raw, scores, targets, extras=extras,
                           probs=scorer.probs)
