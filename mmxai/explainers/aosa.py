"""Adaptive Occlusion Sensitivity Analysis (AOSA; Uchiyama et al., WACV
2023, reference code ``uchiyama33/AOSA``): occluders of a fixed size whose
positions follow optical-flow trajectories through time instead of a fixed
3D window, exactly (one forward per occluder) or by the authors' first-order
approximation (a gradient pass or three)."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..adapters.frames import video_to_frames
from ..baselines import make_baseline
from ..errors import MMXAIError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .gradient_utils import frozen_parameters
from .occlusion import window_starts
from .options import SCORES, check_choice, check_positive, triple
from .progress import Progress
from .targets import TargetSpec

MODES = ('exact', 'approx')
AGGREGATIONS = ('mean', 'sum')
#: ``cv2.calcOpticalFlowFarneback`` settings of the reference code
#: (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags).
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


def farneback_flow(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames ``[T, H, W, 3]`` -> ``[T-1, H, W, 2]`` float32 flow
    (dx, dy) from frame t to t+1 (OpenCV's Farneback on grey frames)."""
    import cv2
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY)
            for f in frames]
    flows = [cv2.calcOpticalFlowFarneback(a, b, None, *FARNEBACK)
             for a, b in zip(grey[:-1], grey[1:])]
    if not flows:
        return np.zeros((0, ) + frames.shape[1:3] + (2, ), np.float32)
    return np.stack(flows).astype(np.float32)


class Trajectories:
    """Occluders following the flow: ``N`` tracks of a ``(wt, wh, ww)``
    occluder, each with a start frame and, per frame ``t``, its top-left
    corner and whether it occludes ``t``.

    Start positions: every ``(t0, top, left)`` of a window of that size
    sliding with ``stride`` (:func:`.occlusion.window_starts`, as
    :class:`Occlusion3D`). From frame ``t`` to ``t+1`` a track moves by the
    flow at its centre ``(top + wh//2, left + ww//2)`` (clipped into the
    frame), rounded to whole pixels (the reference code's rule); it stops
    occluding (for good) once that centre plus the flow, rounded, leaves
    the frame (the reference code's ``delete_outside``, which tests before
    rounding). Without motion every track
    is a fixed window: AOSA is then :class:`Occlusion3D` with the same
    window and stride.

    Attributes:
        t0: ``[N]`` start frames; ``top``, ``left``: ``[N, T]`` corners
        (meaningful where ``active``); ``active``: ``[N, T]`` bool;
        ``motion``: ``[N, 2 (T-1)]`` the flow vectors a track followed
        (0 where it was inactive), for the co-occurrence stacking.
    """

    def __init__(self, flow: np.ndarray, t: int, h: int, w: int,
                 window: Sequence[int], stride: Sequence[int]):
        wt, wh, ww = window
        starts = [window_starts(d, k, s)
                  for d, k, s in zip((t, h, w), window, stride)]
        pos = np.array([(a, b, c) for a in starts[0] for b in starts[1]
                        for c in starts[2]], dtype=np.int64)
        n = len(pos)
        top = np.zeros((n, t), np.int64)
        left = np.zeros((n, t), np.int64)
        active = np.zeros((n, t), bool)
        motion = np.zeros((n, max(t - 1, 0), 2), np.float32)
        t0 = pos[:, 0]
        y, x = pos[:, 1].copy(), pos[:, 2].copy()
        alive = np.ones(n, bool)
        for f in range(t):
            on = alive & (t0 <= f) & (f < t0 + wt)
            top[:, f], left[:, f], active[:, f] = y, x, on
            if f == t - 1:
                break
            cy = np.clip(y + wh // 2, 0, h - 1)
            cx = np.clip(x + ww // 2, 0, w - 1)
            fx, fy = flow[f][cy, cx].T  # flow at the centres, moving tracks
            moving = (t0 <= f) & (f + 1 < t0 + wt) & alive
            fx, fy = np.where(moving, fx, 0.0), np.where(moving, fy, 0.0)
            ny, nx = np.round(cy + fy), np.round(cx + fx)
            out = (ny < 0) | (ny > h - 1) | (nx < 0) | (nx > w - 1)
            alive &= ~out
            y = y + np.round(fy).astype(np.int64)
            x = x + np.round(fx).astype(np.int64)
            motion[:, f, 0], motion[:, f, 1] = fx, fy
        self.window, self.t0 = (wt, wh, ww), t0
        self.top, self.left, self.active = top, left, active
        self.motion = motion.reshape(n, -1)
        self.shape = (t, h, w)

    def __len__(self) -> int:
        return len(self.t0)

    def factors(self, index: Sequence[int], device=None
                ) -> Tuple[Tensor, Tensor]:
        """Tracks ``index`` as rows ``[n, T, H]`` and columns ``[n, T, W]``
        (bool): track ``i`` occludes ``(t, h, w)`` iff ``rows[i, t, h] and
        cols[i, t, w]`` (inactive frames: no rows)."""
        t, h, w = self.shape
        _, wh, ww = self.window
        top = torch.as_tensor(self.top[index], device=device)[..., None]
        left = torch.as_tensor(self.left[index], device=device)[..., None]
        on = torch.as_tensor(self.active[index], device=device)[..., None]
        ys = torch.arange(h, device=device)
        xs = torch.arange(w, device=device)
        rows = (ys >= top) & (ys < top + wh) & on
        cols = (xs >= left) & (xs < left + ww)
        return rows, cols

    def masks(self, index: Sequence[Sequence[int]],
              device=None) -> Tensor:
        """``[n, T, H, W]`` bool: occluder ``i`` is the union of the tracks
        ``index[i]`` (one track, or a track and those stacked with it)."""
        depth = max(len(i) for i in index)
        out = None
        for k in range(depth):  # k-th member of every occluder
            sel = [i[k] if k < len(i) else i[0] for i in index]
            rows, cols = self.factors(sel, device)
            m = rows[..., :, None] & cols[..., None, :]
            out = m if out is None else out | m
        return out

    def stacked(self, extra: int) -> List[List[int]]:
        """Occluders: each track alone (``extra=0``) or with the ``extra``
        tracks whose motion is most similar (cosine of the flow vectors
        followed: the reference code's ``flow_vec_corr`` stacking, its
        ``N_stack_mask``)."""
        n = len(self)
        if extra <= 0 or n < 2:
            return [[i] for i in range(n)]
        vec = torch.from_numpy(self.motion).double()
        norm = vec.norm(dim=1) + 1e-10
        sims = (vec @ vec.t()) / norm[:, None] / norm[None]
        sims.fill_diagonal_(-math.inf)
        k = min(extra, n - 1)
        near = sims.topk(k, dim=1).indices
        return [[i] + near[i].tolist() for i in range(n)]


@EXPLAINERS.register_module()
class AOSA(BaseExplainer):
    """Adaptive occlusion sensitivity (Uchiyama et al. 2023).

    Occluder ``n`` is a ``(wt, wh, ww)`` window that starts at a position of
    a sliding window (as :class:`Occlusion3D`) and moves with the optical
    flow (OpenCV's Farneback on the de-normalised frames, once per view;
    see :class:`Trajectories`); ``stack=k`` joins each track with the ``k``
    tracks of the most similar motion (the authors' co-occurrence masks).
    With its mask ``m_n`` and the removal value ``v`` (``baseline``), the
    occluded clip is ``x_n = x + (v - x) m_n`` and its drop
    ``d_n = s_c(x) - s_c(x_n)``:

    * ``mode='exact'``: ``s_c(x_n)`` from one forward per occluder
      (``batch_size`` occluded clips per forward);
    * ``mode='approx'`` (the authors' first-order approximation):
      ``s_c(x_n) ~ s_c(x) + sum grad s_c(x) * (v - x) * m_n``, one forward
      and backward per view. ``adjust=True`` adds the authors' outlier
      correction: occluders whose estimated change is an outlier (beyond
      1.5 IQR of the quartiles) are estimated again by the expansion at
      ``x_p``, ``p`` the most extreme occluder on that side:
      ``s_c(x_n) ~ s_c(x_p) + grad s_c(x_p) . (x_n - x_p)`` (up to two more
      forward+backward passes). Both are exact for a model linear in the
      input (``score='logit'``).

    A voxel's value: ``aggregate='mean'`` (default) the mean drop over the
    occluders covering it (Captum's rule, :class:`Occlusion3D`'s; voxels no
    occluder covers get 0); ``'sum'`` the reference code's weighting
    ``1/N sum_n d_n m_n / (1 - |m_n| / |x|)`` (without its final min-max
    rescaling).

    Scores: softmax probability of the target (``score='prob'``, default,
    the authors') or its pre-softmax score (``'logit'``), view-averaged,
    each view occluded on its own (:class:`ViewScorer`).

    Args:
        window: occluder size ``(t, h, w)``; default the whole clip in time
            (the reference code's single-start tracks) and ``H/7 x W/7``
            (its 16 px at 112 px), rounded up.
        stride: start positions' step; default half the window, rounded
            up (its 8 px at 112 px).
        mode: ``'exact'`` or ``'approx'``.
        stack: extra tracks joined to each occluder
            (:meth:`Trajectories.stacked`; the reference code's
            ``N_stack_mask``, whose value 1 means none: ``stack=0``; its
            example uses 3).
        baseline: removal value (``'mean'``: 0 after normalisation, the
            reference code's; ``'blur'``, ``'temporal_mean'``, a number).
        aggregate: ``'mean'`` or ``'sum'`` (above).
        adjust: the approximation's outlier correction.
        batch_size: occluded clips per forward (exact), occluder masks per
            step (both).
    """
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module,
                 window: Optional[Sequence[int]] = None,
                 stride: Optional[Sequence[int]] = None, mode: str = 'exact',
                 stack: int = 0, baseline='mean', aggregate: str = 'mean',
                 adjust: bool = False, score: str = 'prob',
                 batch_size: int = 8,
                 blur_sigma: Optional[Sequence[float]] = None,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_choice('mode', mode, MODES)
        check_choice('aggregate', aggregate, AGGREGATIONS)
        check_choice('score', score, SCORES)
        check_positive('batch_size', batch_size)
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 0:
            raise MMXAIError(f'stack must be a whole number >= 0, got '
                             f'{stack!r}')
        self.window = None if window is None else triple('window', window,
                                                         (1, 1, 1))
        self.stride = None if stride is None else triple('stride', stride,
                                                         (1, 1, 1))
        self.mode, self.stack, self.baseline = mode, stack, baseline
        self.aggregate, self.adjust, self.score = aggregate, bool(adjust), \
            score
        self.batch_size, self.blur_sigma = int(batch_size), blur_sigma
        self.progress = progress

    def settings(self) -> Dict[str, Any]:
        return dict(window=self.window and list(self.window),
                    stride=self.stride and list(self.stride),
                    mode=self.mode, stack=self.stack,
                    baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor',
                    aggregate=self.aggregate, adjust=self.adjust,
                    score=self.score, batch_size=self.batch_size)

    # ------------------------------------------------------- geometry
    def geometry(self, t: int, h: int, w: int
                 ) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """``(window, stride)`` for a ``T x H x W`` view."""
        window = self.window or (t, math.ceil(h / 7), math.ceil(w / 7))
        window = tuple(min(k, d) for k, d in zip(window, (t, h, w)))
        stride = self.stride or tuple(max(1, math.ceil(k / 2))
                                      for k in window)
        for k, s, d in zip(window, stride, (t, h, w)):
            if s > k and k < d:
                raise MMXAIError(f'AOSA stride {s} is larger than the '
                                 f'window {k}: some voxels would be skipped')
        return window, stride

    def frames(self, video: Tensor) -> np.ndarray:
        """Canonical (normalised) ``[B, V, C, T, H, W]`` -> uint8 RGB
        ``[B, V, T, H, W, 3]``: the data preprocessor undone (as
        :func:`mmxai.adapters.inputs_to_frames`)."""
        video = video.detach().float().cpu()
        c = video.shape[2]
        dp = getattr(self.model, 'data_preprocessor', None)
        shape = (1, 1, c, 1, 1, 1)
        for name, op in (('std', torch.mul), ('mean', torch.add)):
            val = getattr(dp, name, None)
            if isinstance(val, Tensor) and val.numel() == c:
                video = op(video, val.detach().float().cpu().view(shape))
        if bool(getattr(dp, 'to_rgb', False)) and c == 3:
            video = video.flip(2)
        return video_to_frames(video)

    def trajectories(self, frames: np.ndarray) -> Trajectories:
        """Tracks for one view's frames ``[T, H, W, 3]``."""
        t, h, w = frames.shape[:3]
        window, stride = self.geometry(t, h, w)
        return Trajectories(farneback_flow(frames), t, h, w, window, stride)

    # ------------------------------------------------------- attribute
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, self.score)
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        frames = self.frames(video)
        raw = video.new_zeros((b_n, v_n, t, h, w), dtype=torch.float32)
        tracks = [[self.trajectories(frames[b, v]) for v in range(v_n)]
                  for b in range(b_n)]
        occluders = [[tr.stacked(self.stack) for tr in row]
                     for row in tracks]
        total = sum(len(o) for row in occluders for o in row)
        per = 2 if self.mode == 'exact' else 1
        bar = Progress(total * per, f'{self.name} ({self.mode})',
                       self.progress)
        counts = []
        with bar:
            for b in range(b_n):
                cls = int(targets[b])
                for v in range(v_n):
                    x = video[b, v]
                    base = make_baseline(x, self.baseline, self.blur_sigma)
                    tr, occ = tracks[b][v], occluders[b][v]
                    if self.mode == 'exact':
                        drops = self._exact_drops(scorer, b, v, cls, x,
                                                  base, tr, occ, bar)
                    else:
                        drops = self._approx_drops(scorer, b, v, cls, x,
                                                   base, tr, occ, bar)
                    raw[b, v] = self._aggregate(drops, tr, occ, x.device,
                                                bar)
                    counts.append(len(occ))
        extras = {'num_occluders': torch.tensor(counts).view(b_n, v_n)}
        return Attribution(raw, scores, targets, extras=extras,
                           probs=scorer.probs)

    def _exact_drops(self, scorer, b, v, cls, x, base, tr, occ, bar
                     ) -> Tensor:
        """``[N]`` drops ``s_c(x) - s_c(x_n)``, one forward per occluder."""
        clean = scorer.clean(b, v)[cls]
        drops = []
        with torch.inference_mode():
            for start, stop in batches(len(occ), self.batch_size):
                m = tr.masks(occ[start:stop], x.device)[:, None]
                clips = torch.where(m, base, x)
                drops.append(clean - scorer(b, v, clips)[:, cls])
                bar.update(stop - start)
        return torch.cat(drops).float()

    def _score_grad(self, scorer, b, v, cls, x: Tensor
                    ) -> Tuple[Tensor, Tensor]:
        """``(s_c(x), d s_c / d x)`` for one view ``x [C, T, H, W]``."""
        with torch.enable_grad(), frozen_parameters(self.model):
            xi = x.detach().clone().requires_grad_(True)
            s = scorer(b, v, xi[None])[0, cls]
            grad, = torch.autograd.grad(s, xi)
        return s.detach().float(), grad.detach()

    def _mask_chunk(self, occ) -> int:
        """Occluders per step of the mask sums: ``8 * batch_size`` single
        tracks (row/column factors), ``batch_size`` stacked masks
        (``[n, T, H, W]`` each)."""
        single = all(len(i) == 1 for i in occ)
        return self.batch_size * 8 if single else self.batch_size

    def _mask_sums(self, g: Tensor, tr, occ) -> Tensor:
        """``[N]`` sums of ``g [T, H, W]`` over each occluder's mask (single
        tracks: ``sum_t rows_t^T g_t cols_t``, no masks built)."""
        out = []
        for start, stop in batches(len(occ), self._mask_chunk(occ)):
            chunk = occ[start:stop]
            if all(len(i) == 1 for i in chunk):
                rows, cols = tr.factors([i[0] for i in chunk], g.device)
                out.append(torch.einsum('nth,thw,ntw->n', rows.to(g),
                                        g, cols.to(g)))
            else:
                m = tr.masks(chunk, g.device)
                out.append((m * g).flatten(1).sum(1))
        return torch.cat(out).float()

    def _approx_drops(self, scorer, b, v, cls, x, base, tr, occ, bar
                      ) -> Tensor:
        """``[N]`` first-order drops ``-sum grad (v - x) m_n`` (and the
        outlier correction)."""
        s0, grad = self._score_grad(scorer, b, v, cls, x)
        delta = base - x
        g = (grad * delta).sum(0)  # [T, H, W]
        change = self._mask_sums(g, tr, occ)  # s(x_n) - s(x)
        if self.adjust and len(occ) > 3:
            q1, q3 = torch.quantile(change.double(),
                                    torch.tensor([0.25, 0.75]).double()
                                    ).tolist()
            iqr = q3 - q1
            sides = ((change > q3 + 1.5 * iqr, True),
                     (change < q1 - 1.5 * iqr, False))
            for side, upper in sides:
                idx = side.nonzero().flatten()
                if len(idx) == 0:
                    continue
                vals = change[idx]
                p = int(idx[vals.argmax() if upper else vals.argmin()])
                mp = tr.masks([occ[p]], x.device)[0]
                xp = torch.where(mp[None], base, x)
                sp, gp = self._score_grad(scorer, b, v, cls, xp)
                gq = (gp * delta).sum(0)
                sel = [occ[int(i)] for i in idx]
                # s(x_n) ~ s(x_p) + grad(x_p) . (v - x)(m_n - m_p)
                est = sp + self._mask_sums(gq, tr, sel) - (gq * mp).sum()
                change[idx] = est - s0
        bar.update(len(occ))
        return -change

    def _aggregate(self, drops: Tensor, tr, occ, device, bar) -> Tensor:
        """``[T, H, W]`` map from the occluders' drops."""
        t, h, w = tr.shape
        acc = torch.zeros((t, h, w), device=device)
        cover = torch.zeros((t, h, w), device=device)
        size = float(t * h * w)
        for start, stop in batches(len(occ), self._mask_chunk(occ)):
            chunk = occ[start:stop]
            d = drops[start:stop].to(device).float()
            single = all(len(i) == 1 for i in chunk)
            if single:
                rows, cols = tr.factors([i[0] for i in chunk], device)
                rows, cols = rows.float(), cols.float()
                area = (rows.sum(2) * cols.sum(2)).sum(1)
                cover += torch.einsum('nth,ntw->thw', rows, cols)
            else:
                m = tr.masks(chunk, device).float()
                area = m.flatten(1).sum(1)
                cover += m.sum(0)
            if self.aggregate == 'sum':
                d = d / (1 - area / size).clamp_min(1e-12) / len(occ)
            acc += torch.einsum('n,nth,ntw->thw', d, rows, cols) if single \
                else torch.einsum('n,nthw->thw', d, m)
        if self.mode == 'exact':
            bar.update(len(occ))
        if self.aggregate == 'sum':
            return acc
        return torch.where(cover > 0, acc / cover.clamp_min(1),
                           torch.zeros_like(acc))
