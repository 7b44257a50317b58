"""Frame Shapley values: the Element Shapley Value of each frame (or group of
frames) to a class score (Price & Damen 2020, "Play Fair: Frame
Attributions in Video Models"; their code: ``willprice/play-fair``)."""
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..baselines import check_baseline, make_baseline
from ..errors import MMXAIError, UnsupportedModelError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .options import SCORES, check_choice, check_positive
from .progress import Progress
from .targets import TargetSpec

#: How a subset's score is computed (see :class:`FrameShapley`).
PATHS = ('auto', 'cached', 'subclip', 'fill')
#: What stands in for a missing frame on the ``'fill'`` path.
FILLS = ('nearest', 'baseline')
#: ``v(empty)`` rules (a number is accepted too).
EMPTIES = ('prior', 'baseline')
#: At most this many segments in exact mode (2^n subsets).
EXACT_LIMIT = 20
#: Feature elements per cached head call (bounds the cached path's memory).
_CACHE_ELEMENTS = 1 << 24


def variable_length_reason(model: nn.Module) -> Optional[str]:
    """``None`` when ``model`` scores any number of frames by averaging
    per-frame features (TSN: a ``Recognizer2D`` whose backbone sees each
    frame alone, no neck, a ``TSNHead`` with ``AvgConsensus``, no
    ``fcn_test``), else why not (one line).

    The rule: the backbone has no ``num_segments`` (TSM, TIN, TANet,
    MobileNetV2/MobileOne-TSM shift or mix features across that many
    frames), nothing between backbone and head, and the head is exactly
    ``TSNHead`` (``TSMHead``/``TRNHead`` reshape by a fixed
    ``num_segments``; ``TPNHead`` comes with a neck) averaging its
    segments. Then ``score(S) = fc(mean_{t in S} pool(f_t))``, defined for
    every non-empty ``S``.
    """
    from mmaction.models import Recognizer2D
    from mmaction.models.heads import TSNHead
    from mmaction.models.heads.base import AvgConsensus
    name = type(model).__name__
    if not isinstance(model, Recognizer2D):
        return f'{name} takes a fixed number of frames'
    backbone = model.backbone
    if getattr(backbone, 'num_segments', None):
        return (f'its backbone {type(backbone).__name__} mixes '
                f'{backbone.num_segments} frames (temporal shift/interaction)')
    if getattr(model, 'with_neck', False):
        return 'it has a neck between backbone and head'
    head = model.cls_head
    if type(head) is not TSNHead:
        return f'its head {type(head).__name__} is not TSNHead'
    if not isinstance(getattr(head, 'consensus', None), AvgConsensus):
        return 'its head does not average segments (AvgConsensus)'
    cfg = getattr(model, 'test_cfg', None) or {}
    if hasattr(cfg, 'get') and cfg.get('fcn_test', False):
        return 'it tests fully convolutionally (fcn_test)'
    return None


def segment_ids(frames: int, segments: Optional[int]) -> Tensor:
    """``[T]`` segment index of each frame: ``segments`` contiguous groups
    whose sizes differ by at most one (``numpy.array_split``); ``None``:
    one segment per frame."""
    if segments is None:
        return torch.arange(frames)
    if segments > frames:
        raise MMXAIError(f'frame_shapley: segments={segments} exceeds the '
                         f'{frames} frames of a view')
    parts = np.array_split(np.arange(frames), segments)
    ids = torch.empty(frames, dtype=torch.long)
    for k, part in enumerate(parts):
        ids[torch.as_tensor(part)] = k
    return ids


def exact_shapley(values: Tensor) -> Tensor:
    """Shapley values ``[n]`` from ``values [2^n]`` (``values[m]`` = v of
    the subset whose bit ``i`` says whether player ``i`` is in it):
    ``phi_i = sum_{S not i} |S|! (n-|S|-1)! / n! (v(S + i) - v(S))``."""
    size = values.numel()
    n = size.bit_length() - 1
    if 1 << n != size:
        raise ValueError(f'{size} values are not 2^n')
    masks = torch.arange(size)
    pop = torch.zeros(size, dtype=torch.long)
    for i in range(n):
        pop += (masks >> i) & 1
    weight = torch.tensor([math.factorial(k) * math.factorial(n - k - 1) /
                           math.factorial(n) for k in range(n)],
                          dtype=torch.float64)
    values = values.double().cpu()
    phi = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        without = masks[((masks >> i) & 1) == 0]
        phi[i] = (weight[pop[without]] *
                  (values[without | (1 << i)] - values[without])).sum()
    return phi


def sample_permutations(n: int, num: int, antithetic: bool,
                        generator: torch.Generator) -> List[List[int]]:
    """``num`` permutations of ``range(n)``; ``antithetic``: in pairs
    (a random one, then its reverse; one plain one more when ``num`` is
    odd)."""
    perms = []
    while len(perms) < num:
        p = torch.randperm(n, generator=generator).tolist()
        perms.append(p)
        if antithetic and len(perms) < num:
            perms.append(p[::-1])
    return perms


def permutation_shapley(perms: Sequence[Sequence[int]], value) -> Tensor:
    """Mean marginal contribution ``v(P_<i + i) - v(P_<i)`` of each player
    over ``perms`` (``value(mask) -> float``, masks as bit sets). Each
    permutation's marginals add up to ``v(all) - v(empty)``."""
    n = len(perms[0])
    phi = torch.zeros(n, dtype=torch.float64)
    for p in perms:
        mask, prev = 0, value(0)
        for i in p:
            mask |= 1 << i
            cur = value(mask)
            phi[i] += cur - prev
            prev = cur
    return phi / len(perms)


def permutation_masks(perms: Sequence[Sequence[int]]) -> List[int]:
    """The distinct non-empty prefix masks of ``perms`` (sorted)."""
    seen = set()
    for p in perms:
        mask = 0
        for i in p:
            mask |= 1 << i
            seen.add(mask)
    return sorted(seen)


def _generator(seed: int, b: int, v: int) -> torch.Generator:
    """A generator seeded by ``(seed, sample, view)``."""
    state = np.random.SeedSequence([seed, b, v]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@EXPLAINERS.register_module()
class FrameShapley(BaseExplainer):
    """Shapley value of each frame (segment) of a view to the target's score.

    Players are the segments of every view (``segments=None``: each frame;
    an int ``n``: ``n`` contiguous groups of frames). The game is the
    view-averaged score ``v(S) = 1/V sum_v u_v(S_v)`` with ``u_v`` the score
    of view ``v`` on its segments in ``S`` (``u_v(empty) = v(empty)``), so a
    segment of view ``v`` gets ``phi_v,i / V`` of its view's game and all
    values add up to ``v(all) - v(empty)`` (efficiency; the view average is
    ``predict``'s with ``average_clips='prob'`` for ``score='prob'``).

    ``phi_i = sum_{S not i} |S|!(n-|S|-1)!/n! (u(S + i) - u(S))``: exact over
    the ``2^n`` subsets when ``n <= max_exact``, else the mean marginal
    contribution over ``num_samples`` seeded random permutations
    (``antithetic``: each with its reverse), which keeps efficiency exact.

    How ``u(S)`` is computed (``path``):

    * ``'cached'`` (variable-length models, :func:`variable_length_reason`:
      TSN): the backbone runs once per view on all frames; ``u(S)`` is the
      head on the cached (spatially pooled) features of ``S`` with
      ``num_segs = |S|``, i.e. the model applied to the frames of ``S``
      alone, as play-fair does, without re-running the backbone;
    * ``'subclip'`` (the same models): the model re-run on the sub-clip of
      the frames of ``S`` (equal to ``'cached'``; for checks);
    * ``'fill'`` (any model; fixed-length ones: 3D CNNs, transformers,
      TSM): a full-length clip where each missing frame is replaced by the
      nearest present frame (``fill='nearest'``, ties to the earlier one:
      the model sees only the content of ``S``) or by the ``baseline``
      (``fill='baseline'``, :func:`mmxai.baselines.make_baseline`);
    * ``'auto'``: ``'cached'`` where the model is variable-length, else
      ``'fill'``.

    Args:
        segments: segments per view (``None``: one per frame).
        score: ``'prob'`` (default, play-fair: the view's softmax of the
            target, so ``v(empty)`` can be a class prior) or ``'logit'``
            (pre-softmax score).
        empty: ``v(empty)``: ``'prior'`` (``prior[c]``; ``score='prob'``
            only), ``'baseline'`` (the score of the all-baseline clip) or a
            number. Default: ``'prior'`` for ``'prob'``, ``'baseline'`` for
            ``'logit'``.
        prior: ``K`` class probabilities (play-fair: the training set's
            class frequencies); default uniform ``1/K``.
        fill: ``'nearest'`` or ``'baseline'`` (the ``'fill'`` path).
        baseline: removal value for ``fill='baseline'`` and
            ``empty='baseline'`` (``'mean'``, ``'blur'``, a number, ...).
        path: ``'auto'``, ``'cached'``, ``'subclip'`` or ``'fill'``.
        max_exact: exact mode up to this many segments.
        num_samples: permutations in sampled mode.
        antithetic: sample permutations in reversed pairs.
        seed: permutations of sample ``b``, view ``v`` come from a generator
            seeded by ``(seed, b, v)``.
        batch_size: clips per forward (``'subclip'``, ``'fill'``).
    """
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'
    reports_probs = True

    def __init__(self, model: nn.Module, segments: Optional[int] = None,
                 score: str = 'prob', empty=None,
                 prior: Optional[Sequence[float]] = None,
                 fill: str = 'nearest', baseline='mean', path: str = 'auto',
                 max_exact: int = 8, num_samples: int = 64,
                 antithetic: bool = True, seed: int = 0,
                 batch_size: int = 16, blur_sigma=None,
                 progress: Optional[bool] = None, **kwargs):
        super().__init__(model, **kwargs)
        #: the model's own adapter (a callable target wraps ``adapter``:
        #: the cached path, which reads the head directly, is then off)
        self._plain_adapter = self.adapter
        check_choice('score', score, SCORES)
        check_choice('path', path, PATHS)
        check_choice('fill', fill, FILLS)
        check_positive('batch_size', batch_size)
        check_positive('num_samples', num_samples)
        check_positive('max_exact', max_exact, 0)
        if max_exact > EXACT_LIMIT:
            raise MMXAIError(f'frame_shapley: max_exact={max_exact} means up '
                             f'to 2^{max_exact} subsets; at most '
                             f'{EXACT_LIMIT}')
        if segments is not None:
            if isinstance(segments, bool) or not isinstance(segments, int):
                raise MMXAIError('frame_shapley: segments must be a whole '
                                 f'number or None, got {segments!r}')
            check_positive('segments', segments)
        check_baseline(baseline)
        if empty is None:
            empty = 'prior' if score == 'prob' else 'baseline'
        if not isinstance(empty, (int, float)) or isinstance(empty, bool):
            check_choice('empty', empty, EMPTIES)
        if empty == 'prior' and score != 'prob':
            raise MMXAIError("frame_shapley: empty='prior' is a probability: "
                             "use score='prob', or empty='baseline' or a "
                             "number with score='logit'")
        self.prior = None
        if prior is not None:
            p = torch.as_tensor(prior, dtype=torch.float64).flatten()
            k = self.adapter.num_classes
            if p.numel() != k or bool((p < 0).any()) or \
                    abs(float(p.sum()) - 1) > 1e-4:
                raise MMXAIError(f'frame_shapley: prior must be {k} '
                                 'non-negative class probabilities summing '
                                 f'to 1, got {p.numel()} summing to '
                                 f'{float(p.sum()):.4g}')
            self.prior = p
        self.segments, self.score, self.empty = segments, score, empty
        self.fill, self.baseline, self.path = fill, baseline, path
        self.max_exact, self.num_samples = int(max_exact), int(num_samples)
        self.antithetic, self.seed = bool(antithetic), int(seed)
        self.batch_size, self.blur_sigma = int(batch_size), blur_sigma
        self.progress = progress

    def settings(self) -> Dict[str, Any]:
        return dict(segments=self.segments, score=self.score,
                    empty=self.empty, prior='uniform' if self.prior is None
                    else 'given', fill=self.fill,
                    baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor',
                    path=self.resolved_path(), max_exact=self.max_exact,
                    num_samples=self.num_samples,
                    antithetic=self.antithetic, seed=self.seed,
                    batch_size=self.batch_size)

    def resolved_path(self) -> str:
        """The path in effect (``'auto'`` resolved for this model)."""
        reason = variable_length_reason(self.model)
        wrapped = self.adapter is not self._plain_adapter
        if self.path == 'auto':
            return 'fill' if reason else 'subclip' if wrapped else 'cached'
        if self.path in ('cached', 'subclip') and reason:
            raise UnsupportedModelError(
                f"frame_shapley path='{self.path}' needs a model that takes "
                f"any number of frames (TSN); {reason}: use path='fill'")
        if self.path == 'cached' and wrapped:
            raise MMXAIError("frame_shapley path='cached' reads the head's "
                             "class scores: use path='subclip' for a "
                             'callable target')
        return self.path

    # ---------------------------------------------------------- values
    def _value(self, logits: Tensor, cls: int) -> Tensor:
        """``[N, K]`` logits -> ``[N]`` float64 values of class ``cls``."""
        if self.score == 'prob':
            return logits.double().softmax(-1)[:, cls]
        return logits.double()[:, cls]

    def _empty_value(self, scorer, x: Tensor, cls: int) -> float:
        if isinstance(self.empty, (int, float)):
            return float(self.empty)
        if self.empty == 'prior':
            k = self.adapter.num_classes
            return 1.0 / k if self.prior is None else float(self.prior[cls])
        base = make_baseline(x, self.baseline, self.blur_sigma)
        with torch.inference_mode():
            return float(self._value(scorer.logits(base[None]), cls)[0])

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        path = self.resolved_path()
        scores, targets, scorer = self.view_scorer(inputs, target,
                                                   data_samples, 'logit')
        video = scorer.video
        b_n, v_n, _, t, h, w = video.shape
        seg = segment_ids(t, self.segments)
        n = int(seg.max()) + 1
        exact = n <= self.max_exact
        members = [torch.nonzero(seg == i).flatten() for i in range(n)]
        phi = torch.zeros(b_n, v_n, n, dtype=torch.float64)
        u_all = torch.zeros(b_n, v_n, dtype=torch.float64)
        u_empty = torch.zeros(b_n, v_n, dtype=torch.float64)
        perms = None
        masks = list(range(1, 1 << n)) if exact else None
        per_view = (1 << n) - 1 if exact else None
        if not exact:
            perms = {(b, v): sample_permutations(
                n, self.num_samples, self.antithetic,
                _generator(self.seed, b, v))
                for b in range(b_n) for v in range(v_n)}
        total = sum(len(masks) if exact else
                    len(permutation_masks(perms[(b, v)]))
                    for b in range(b_n) for v in range(v_n))
        bar = Progress(total, 'frame_shapley', self.progress)
        evaluations = 0
        with bar, torch.inference_mode():
            for b in range(b_n):
                cls = int(targets[b])
                for v in range(v_n):
                    x = video[b, v]  # [C, T, H, W]
                    todo = masks if exact else permutation_masks(
                        perms[(b, v)])
                    vals = self._evaluate(path, scorer, x, cls, todo,
                                          members, bar,
                                          scorer.view_logits[b, v])
                    evaluations += len(todo)
                    empty = self._empty_value(scorer, x, cls)
                    vals[0] = empty
                    u_empty[b, v] = empty
                    u_all[b, v] = vals[(1 << n) - 1]
                    if exact:
                        table = torch.tensor([vals[m] for m in
                                              range(1 << n)],
                                             dtype=torch.float64)
                        phi[b, v] = exact_shapley(table)
                    else:
                        phi[b, v] = permutation_shapley(
                            perms[(b, v)], vals.__getitem__)
        phi = phi / v_n  # each view's share of the view-averaged game
        raw = phi[:, :, seg].float().to(video.device)  # [B, V, T]
        raw = raw[..., None, None].expand(b_n, v_n, t, h, w).contiguous()
        extras = {
            'frame_shapley': phi.float(),  # [B, V, n] (in the map)
            'segment_ids': seg,  # [T]
            'v_all': u_all.mean(1).float(),  # [B]
            'v_empty': u_empty.mean(1).float(),  # [B]
            'view_v_all': u_all.float(), 'view_v_empty': u_empty.float(),
            'exact': exact, 'path': path, 'evaluations': evaluations,
            'num_permutations': 0 if exact else self.num_samples,
        }
        if per_view is not None:
            extras['subsets_per_view'] = per_view
        return Attribution(raw, scores, targets, extras=extras,
                           probs=scorer.probs)

    # ------------------------------------------------------ evaluation
    def _evaluate(self, path: str, scorer, x: Tensor, cls: int,
                  masks: Sequence[int], members: List[Tensor],
                  bar: Progress, clean: Tensor) -> Dict[int, float]:
        """``{mask: u(mask)}`` for the non-empty ``masks`` of one view
        (``clean [K]``: the view's own scores, to check the cache)."""
        frames = [torch.cat([members[i] for i in range(len(members))
                             if m >> i & 1]).sort().values for m in masks]
        out: Dict[int, float] = {}
        if path == 'fill':
            for start, stop in batches(len(masks), self.batch_size):
                clips = torch.stack([self._filled(x, f)
                                     for f in frames[start:stop]])
                vals = self._value(scorer.logits(clips), cls).tolist()
                out.update(zip(masks[start:stop], vals))
                bar.update(stop - start)
            return out
        by_len: Dict[int, List[int]] = {}
        for j, f in enumerate(frames):
            by_len.setdefault(len(f), []).append(j)
        if path == 'cached':
            feats = self._frame_features(x)  # [T, C', ...]
            self._check_cache(feats, clean)
            per = feats[0].numel()
        for k, idx in sorted(by_len.items()):
            if path == 'cached':
                step = max(1, _CACHE_ELEMENTS // max(1, per * k))
            else:
                step = self.batch_size
            for start, stop in batches(len(idx), step):
                chunk = idx[start:stop]
                sel = torch.stack([frames[j] for j in chunk]).to(x.device)
                if path == 'cached':
                    logits = self._cached_logits(feats, sel)
                else:  # sub-clips of k frames, one view each
                    logits = scorer.logits(x[:, sel].permute(1, 0, 2, 3, 4))
                vals = self._value(logits, cls).tolist()
                out.update(zip([masks[j] for j in chunk], vals))
                bar.update(len(chunk))
        return out

    def _filled(self, x: Tensor, present: Tensor) -> Tensor:
        """``x [C, T, H, W]`` with the frames not in ``present`` replaced
        (nearest present frame, ties to the earlier; or the baseline)."""
        t = x.shape[1]
        if self.fill == 'nearest':
            pos = torch.arange(t)
            dist = (pos[:, None] - present[None, :]).abs()
            # argmin takes the first minimum: present is sorted, so ties
            # go to the earlier frame
            src = present[dist.argmin(1)]
            return x[:, src.to(x.device)]
        keep = torch.zeros(t, dtype=torch.bool)
        keep[present] = True
        base = make_baseline(x, self.baseline, self.blur_sigma)
        return torch.where(keep.to(x.device)[None, :, None, None], x, base)

    def _frame_features(self, x: Tensor) -> Tensor:
        """Backbone features of every frame of one view ``[T, C', h, w]``,
        spatially pooled by the head's own pool when it has one (its pool
        of a 1x1 map is then the identity)."""
        model = self.model
        clip = self._plain_adapter.from_video(x[None, None]).contiguous()
        feats, _ = model.extract_feat(clip, stage='backbone', test_mode=True)
        pool = getattr(model.cls_head, 'avg_pool', None)
        return pool(feats) if pool is not None else feats

    def _cached_logits(self, feats: Tensor, sel: Tensor) -> Tensor:
        """Head scores ``[N, K]`` of the frame subsets ``sel [N, k]``."""
        n, k = sel.shape
        picked = feats[sel.flatten()]
        return self.model.cls_head(picked, num_segs=k)

    def _check_cache(self, feats: Tensor, clean: Tensor) -> None:
        """The head on all cached features must give the model's score
        ``clean [K]`` of the view."""
        full = self._cached_logits(
            feats, torch.arange(feats.shape[0], device=feats.device)[None])
        if full[0].shape != clean.shape or not torch.allclose(
                full[0].float(), clean.float(), rtol=1e-3, atol=1e-3):
            raise UnsupportedModelError(
                'frame_shapley: the head on cached frame features does not '
                "reproduce the model's score; use path='fill'")
