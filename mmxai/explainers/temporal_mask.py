"""Temporal masks (Manttari et al., ACCV 2020, "Interpreting video
features: a comparison of 3D convolutional networks and convolutional LSTM
networks"): a mask over the frames, learnt by gradient descent, that
freezes or reverses the frames that matter."""
import math
import os.path as osp
from numbers import Real
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..errors import MMXAIError, UnsupportedModelError
from ..fileio import write_json
from ..registry import EXPLAINERS, OUTPUT_EXTRAS
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .options import SCORES, check_choice
from .progress import Progress
from .targets import TargetSpec
from .view_scorer import ViewScorer

PERTURBATIONS = ('freeze', 'reverse')
MODES = ('delete', 'preserve')
INITS = ('central', 'uniform')
#: the authors' threshold: frames with strength above it form the
#: sub-segments that ``'reverse'`` plays backwards
REVERSE_THRESHOLD = 0.1
#: the authors' initial logits (``sigmoid(+-5)`` is about 0.993 / 0.007)
INIT_LOGIT = 5.0


# ------------------------------------------------------------ perturbations
def freeze_matrix(strength: Tensor) -> Tensor:
    """``[N, T]`` strengths ``s`` -> ``[N, T, T]`` mixing matrices ``W``
    with ``freeze(x)_t = sum_j W[t, j] x_j`` for the authors' recursion

    ``y_0 = x_0``, ``y_t = (1 - s_t) x_t + s_t y_{t-1}``

    (a frame with ``s_t = 1`` repeats the previous frame as perturbed, so a
    run of masked frames freezes on the last kept one). Closed form:
    ``W[t, j] = a_j prod_{r=j+1}^{t} s_r`` for ``j <= t`` (0 above),
    ``a_0 = 1``, ``a_j = 1 - s_j``; differentiable in ``s``. ``s_0`` is
    unused (nothing precedes frame 0).
    """
    n, t = strength.shape
    idx = torch.arange(t, device=strength.device)
    after = idx[None, :] > idx[:, None]  # [j, r]: r > j
    factors = torch.where(after, strength[:, None, :],
                          torch.ones_like(strength)[:, None, :])
    prods = torch.cumprod(factors, dim=-1)  # [N, j, t] prod_{j<r<=t} s_r
    first = torch.cat([strength.new_ones(n, 1), 1 - strength[:, 1:]], 1)
    causal = (idx[:, None] <= idx[None, :]).to(strength.dtype)  # j <= t
    return (prods * first[:, :, None] * causal).transpose(1, 2)


def reverse_partners(strength: Tensor,
                     threshold: float = REVERSE_THRESHOLD
                     ) -> Tuple[Tensor, Tensor]:
    """``[N, T]`` strengths -> ``(partner, src)`` ``[N, T]`` long: the
    frame each frame swaps with under ``'reverse'`` (itself outside runs
    and at an odd run's centre) and the earlier frame of its pair (whose
    strength blends it). The authors' run loop (``find_submasks_from_mask``)
    vectorised: a frame ``j`` in the run ``[a, e]`` (maximal, strength above ``threshold``) swaps with
    ``a + e - j``; no loop, no host synchronisation. Compared in double
    precision, as the authors' Python floats."""
    on = strength.detach().double() > threshold  # [N, T]
    t = on.shape[1]
    idx = torch.arange(t, device=on.device).expand_as(on)
    off = on.new_zeros(on.shape[0], 1)
    starts = on & ~torch.cat([off, on[:, :-1]], 1)
    ends = on & ~torch.cat([on[:, 1:], off], 1)
    first = torch.where(starts, idx, torch.full_like(idx, -1)).cummax(1)[0]
    last = torch.where(ends, idx, torch.full_like(idx, t)).flip(1) \
        .cummin(1)[0].flip(1)
    partner = torch.where(on, first + last - idx, idx)
    return partner, torch.minimum(idx, partner)


def reverse_matrix(strength: Tensor,
                   threshold: float = REVERSE_THRESHOLD) -> Tensor:
    """``[N, T]`` strengths -> ``[N, T, T]`` mixing matrices of the
    authors' ``'reverse'``: each run of frames above ``threshold`` is
    played backwards, blended by the strength of the run's earlier frame of
    each swapped pair ``(a, b)`` (``b`` the mirror of ``a``):

    ``y_a = (1 - s_a) x_a + s_a x_b``, ``y_b = (1 - s_a) x_b + s_a x_a``.

    The middle frame of an odd run and frames outside runs are unchanged.
    The runs are found on the detached strengths (a discrete choice,
    :func:`reverse_partners`); the blend is differentiable in ``s``.
    """
    t = strength.shape[1]
    partner, src = reverse_partners(strength, threshold)
    paired = partner != torch.arange(t, device=partner.device)
    g = strength.gather(1, src) * paired.to(strength.dtype)
    swap = torch.nn.functional.one_hot(partner, t).to(strength)
    return torch.diag_embed(1 - g) + g[..., None] * swap


def mix_frames(clips: Tensor, weights: Tensor) -> Tensor:
    """``[N, C, T, H, W]`` clips, ``[N, T, T]`` weights ->
    ``y[:, :, t] = sum_j W[t, j] x[:, :, j]``."""
    n, c, t, h, w = clips.shape
    frames = clips.transpose(1, 2).reshape(n, t, c * h * w)
    mixed = torch.bmm(weights.to(clips.dtype), frames)  # one [T, T] matmul
    return mixed.view(n, t, c, h, w).transpose(1, 2)


def perturb(clips: Tensor, strength: Tensor, perturbation: str) -> Tensor:
    """``[N, C, T, H, W]`` clips perturbed with strengths ``[N, T]`` in
    [0, 1] (1: frame fully frozen / reversed)."""
    make = freeze_matrix if perturbation == 'freeze' else reverse_matrix
    return mix_frames(clips, make(strength))


# ----------------------------------------------------------- regularisers
def tv_norm(mask: Tensor, beta: float = 3.0) -> Tensor:
    """``[N, T]`` -> ``[N]`` the authors' ``calc_tv_norm`` with
    ``p = q = beta``: ``sum_{u=1}^{T-2} |m_{u-1} - m_u|^beta +
    |m_{u+1} - m_u|^beta`` (the outer ``(.)^(1/p)`` and ``(.)^q`` cancel;
    inner pairs count twice, the two end pairs once)."""
    d = (mask[:, 1:] - mask[:, :-1]).abs() ** beta  # [N, T-1]
    return d[:, :-1].sum(1) + d[:, 1:].sum(1)


def _number(name: str, value: Any, minimum: float,
            strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or \
            not math.isfinite(value) or value < minimum or \
            (strict and value == minimum):
        bound = f'> {minimum}' if strict else f'>= {minimum}'
        raise MMXAIError(f'{name} must be a number {bound}, got {value!r}')
    return float(value)


def _whole(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or \
            value < minimum:
        raise MMXAIError(f'{name} must be a whole number >= {minimum}, '
                         f'got {value!r}')
    return int(value)


@EXPLAINERS.register_module()
class TemporalMask(BaseExplainer):
    """Temporal mask ``m`` in [0, 1]^T per view, broadcast over H, W.

    ``m = sigmoid(theta)``; Adam on ``theta`` minimises (``'delete'``,
    the authors' objective; ``m_t = 1``: frame ``t`` perturbed)

    ``L = s_c(P(x, m)) + lambda1 * sum_t m_t + lambda2 * TV_beta(m)``

    or (``'preserve'``, an extension; ``m_t = 1``: frame ``t`` kept)

    ``L = -s_c(P(x, 1 - m)) + lambda1 * sum_t m_t + lambda2 * TV_beta(m)``

    with ``P`` ``'freeze'`` (a masked frame repeats the previous frame as
    perturbed: ``y_t = (1 - s_t) x_t + s_t y_{t-1}``) or ``'reverse'``
    (runs of frames with strength above 0.1 played backwards, each swapped
    pair blended by its earlier frame's strength), both linear in the
    frames and differentiable in the strengths (:func:`freeze_matrix`,
    :func:`reverse_matrix`). ``s_c`` is the target's softmax probability
    (view-averaged as ``predict`` reports it, the other views clean) or its
    pre-softmax score (``score='logit'``). ``TV_beta`` is the authors'
    :func:`tv_norm`.

    ``init='central'`` (authors): a centred block of perturbed frames is
    shrunk from both ends while its perturbation removes at least
    ``init_threshold`` (90%) of the score drop of the fully frozen clip
    (every frame = frame 0); as in the authors' code the block of the first
    shrink that falls below the threshold is used, at logits ``+-5``.
    ``'preserve'`` shrinks a centred kept block while it keeps
    ``init_threshold`` of the score (the last block that does). With
    ``T < 4`` (no shrink to try) the whole clip. ``'uniform'``: all logits
    0 (m = 0.5).

    Each view of each sample gets its own mask (the other views clean);
    ``batch_size`` masks are optimised in one forward/backward (Adam is
    element-wise and the model is in eval mode, so the masks equal those of
    one view at a time). ``extras``: ``temporal_masks`` ``[B, V, T]``,
    ``original_score``, ``freeze_score``, ``reverse_score`` ``[B, V]``
    (``s_c`` of the clean input and of the input perturbed with the final
    mask, as the authors report them), ``score``. Frame 0 cannot be frozen
    (nothing precedes it): under ``'freeze'`` its mask value follows the
    regularisers only.

    Passes: the scorer's clean forward (target, ``original_score``, the
    central start's clean score), ``T//2`` gradient-free forwards per view
    for the central start (``T >= 4``; none for ``'uniform'``),
    ``iterations`` forward + backward passes to the input (weights frozen)
    and one gradient-free forward of 2 clips per view (the final mask
    frozen and reversed). The authors' loop needs one forward less: their
    freeze score is the last iteration's, of the mask one Adam step before
    the reported one.

    Args:
        perturbation: ``'freeze'`` or ``'reverse'`` (used in the descent;
            both scores are reported).
        mode: ``'delete'`` or ``'preserve'``.
        iterations: Adam steps (authors: 300).
        lr: Adam learning rate (authors' PyTorch code: 0.2).
        lambda1: weight of the L1 term (0.01).
        lambda2: weight of the TV term (0.02).
        beta: TV exponent ``p = q`` (3).
        init: ``'central'`` or ``'uniform'``.
        init_threshold: share of the score drop the central block keeps.
        score: ``'prob'`` or ``'logit'``.
        batch_size: masks (views) optimised per pass.
        progress: ``True``/``False``/``None`` (after 2 s).
    """
    many_forwards = True
    memory_kind = 'graph'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module, perturbation: str = 'freeze',
                 mode: str = 'delete', iterations: int = 300,
                 lr: float = 0.2, lambda1: float = 0.01,
                 lambda2: float = 0.02, beta: float = 3.0,
                 init: str = 'central', init_threshold: float = 0.9,
                 score: str = 'prob', batch_size: int = 4,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_choice('perturbation', perturbation, PERTURBATIONS)
        check_choice('mode', mode, MODES)
        check_choice('init', init, INITS)
        check_choice('score', score, SCORES)
        self.perturbation, self.mode, self.init = perturbation, mode, init
        self.score = score
        self.iterations = _whole('iterations', iterations, 1)
        self.batch_size = _whole('batch_size', batch_size, 1)
        self.lr = _number('lr', lr, 0.0, strict=True)
        self.lambda1 = _number('lambda1', lambda1, 0.0)
        self.lambda2 = _number('lambda2', lambda2, 0.0)
        self.beta = _number('beta', beta, 1.0)
        self.init_threshold = _number('init_threshold', init_threshold, 0.0)
        self.progress = progress

    def settings(self) -> Dict[str, Any]:
        return dict(perturbation=self.perturbation, mode=self.mode,
                    iterations=self.iterations, lr=self.lr,
                    lambda1=self.lambda1, lambda2=self.lambda2,
                    beta=self.beta, init=self.init,
                    init_threshold=self.init_threshold, score=self.score,
                    batch_size=self.batch_size)

    # -------------------------------------------------------------- parts
    def strength(self, mask: Tensor) -> Tensor:
        """Perturbation strength of a mask: ``m`` (delete), ``1 - m``."""
        return mask if self.mode == 'delete' else 1 - mask

    def target_scores(self, scorer: ViewScorer, rows, clips: Tensor,
                      targets: Tensor) -> Tensor:
        """``[N]`` ``s_c`` of perturbed copies ``clips`` of views ``rows``
        (``(b, v)`` each), combined with the other views' clean scores."""
        z = scorer.logits(clips)
        return torch.stack([
            scorer.combine(b, v, z[i:i + 1])[0, int(targets[b])]
            for i, (b, v) in enumerate(rows)])

    @staticmethod
    def clean_scores(scorer: ViewScorer, rows, targets: Tensor) -> Tensor:
        """``[N]`` ``s_c`` of the clean views ``rows``, from the scorer's
        clean forward (no forward of its own)."""
        return torch.stack([scorer.clean(b, v)[int(targets[b])]
                            for b, v in rows])

    def initial_logits(self, scorer: ViewScorer, rows, clips: Tensor,
                       targets: Tensor) -> Tensor:
        """``[N, T]`` initial logits (see the class docstring)."""
        n, t = len(rows), clips.shape[2]
        if self.init == 'uniform':
            return clips.new_zeros((n, t), dtype=torch.float32)
        ones = clips.new_ones((n, t), dtype=torch.float32)
        if t < 4:  # the authors' shrink loop would not run
            return ones * INIT_LOGIT
        with torch.no_grad():
            orig = self.clean_scores(scorer, rows, targets)
            full = self.target_scores(scorer, rows,
                                      perturb(clips, ones, 'freeze'),
                                      targets)
            chosen = ones.clone()
            done = torch.zeros(n, dtype=torch.bool, device=clips.device)
            for i in range(1, t // 2):
                block = ones.clone()
                block[:, :i] = 0
                block[:, t - i:] = 0  # a centred block of ones
                strength = block if self.mode == 'delete' else 1 - block
                s = self.target_scores(
                    scorer, rows, perturb(clips, strength, self.perturbation),
                    targets)
                if self.mode == 'delete':
                    # the authors': rows still shrinking take this block,
                    # also the one that falls below the threshold (NaN:
                    # the shrinking goes on)
                    ratio = (orig - s) / (orig - full)
                    take = ~done
                    done |= ratio < self.init_threshold
                else:
                    # the smallest kept block that still keeps the
                    # threshold's share (a block that does not would start
                    # the descent where the score is flat)
                    ratio = (s - full) / (orig - full)
                    done |= ~(ratio >= self.init_threshold)
                    take = ~done
                chosen = torch.where(take[:, None], block, chosen)
            return (chosen * 2 - 1) * INIT_LOGIT

    def optimise(self, scorer: ViewScorer, rows, targets: Tensor,
                 bar: Progress) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Masks ``[N, T]`` of views ``rows`` and their scores.

        Passes: ``iterations`` forward + backward passes to the input, then
        one gradient-free forward of ``2N`` clips (the final mask frozen and
        reversed); the clean score is the scorer's (no forward here)."""
        clips = torch.stack([scorer.video[b, v] for b, v in rows])
        theta = self.initial_logits(scorer, rows, clips, targets)
        theta = theta.detach().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=self.lr)
        sign = 1.0 if self.mode == 'delete' else -1.0
        for _ in range(self.iterations):
            mask = torch.sigmoid(theta)
            pert = perturb(clips, self.strength(mask), self.perturbation)
            s = self.target_scores(scorer, rows, pert, targets)
            loss = sign * s + self.lambda1 * mask.abs().sum(1) + \
                self.lambda2 * tv_norm(mask, self.beta)
            theta.grad = torch.autograd.grad(loss.sum(), theta)[0]
            opt.step()
            bar.update(1)
        n = len(rows)
        with torch.no_grad():
            mask = torch.sigmoid(theta)
            strength = self.strength(mask)
            both = torch.cat([perturb(clips, strength, p)
                              for p in PERTURBATIONS])  # [2N, C, T, H, W]
            final = self.target_scores(scorer, rows + rows, both, targets)
        scores = {'original_score': self.clean_scores(scorer, rows, targets)}
        for i, p in enumerate(PERTURBATIONS):
            scores[f'{p}_score'] = final[i * n:(i + 1) * n]
        return mask.detach(), scores

    # ---------------------------------------------------------- attribute
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        t = self.adapter.to_video(inputs).shape[3]
        if t < 2:
            raise UnsupportedModelError(
                f'temporal_mask needs at least 2 frames per view, got {t}')
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, self.score)
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        rows = [(b, v) for b in range(b_n) for v in range(v_n)]
        step = max(1, int(self.batch_size))
        groups = [rows[i:i + step] for i in range(0, len(rows), step)]
        masks = video.new_zeros((b_n, v_n, t), dtype=torch.float32)
        names = ('original_score', 'freeze_score', 'reverse_score')
        extras = {k: video.new_zeros((b_n, v_n), dtype=torch.float32)
                  for k in names}
        bar = Progress(len(groups) * self.iterations, 'temporal_mask',
                       self.progress)
        with bar, frozen_parameters(self.model), torch.enable_grad():
            for group in groups:
                m, s = self.optimise(scorer, group, targets, bar)
                for i, (b, v) in enumerate(group):
                    masks[b, v] = m[i]
                    for k in names:
                        extras[k][b, v] = s[k][i]
        raw = masks[..., None, None].expand(b_n, v_n, t, h, w).contiguous()
        extras.update(temporal_masks=masks, score=self.score,
                      mode=self.mode, perturbation=self.perturbation)
        return Attribution(raw, scores, targets, extras=extras,
                           probs=scorer.probs)


# ----------------------------------------------------------------- output
def _sample_index(explanation) -> int:
    """Which sample of the (batch-wide) extras ``explanation`` holds:
    ``Explanation[i]`` keeps the extras of the whole batch."""
    masks = explanation.extras['temporal_masks']
    if masks.shape[0] == 1:
        return 0
    mine = explanation.raw_maps[0, :, :, 0, 0].to(masks)
    diff = (masks - mine[None]).abs().flatten(1).amax(1)
    return int(diff.argmin())


@OUTPUT_EXTRAS.register_module(name='temporal_mask')
def write_temporal_mask(explanation, folder: str, frames=None,
                        class_names=None) -> List[str]:
    """``temporal_mask.json``: each view's mask and its original / freeze /
    reverse scores (the authors' report)."""
    ex = explanation.extras
    if 'temporal_masks' not in ex:
        return []
    b = _sample_index(explanation)
    views = []
    for v in range(ex['temporal_masks'].shape[1]):
        views.append({
            'mask': [round(float(x), 6) for x in ex['temporal_masks'][b, v]],
            **{k: float(ex[k][b, v]) for k in
               ('original_score', 'freeze_score', 'reverse_score')}})
    rec = dict(method='temporal_mask', score=ex.get('score'),
               mode=ex.get('mode'), perturbation=ex.get('perturbation'),
               views=views)
    return [write_json(osp.join(folder, 'temporal_mask.json'), rec)]
