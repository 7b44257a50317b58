"""Faithfulness and localisation metrics as plain functions (no Runner).

Shapes follow mmxai's conventions: model inputs as the data preprocessor
returns them, canonical video ``[B, V, C, T, H, W]``, maps ``[B, V, T, H, W]``
(a ``[B, T, H, W]`` map is used for every view). Definitions:
``docs/integration.md`` and ``algorithms.md`` section 7.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..baselines import Baseline, gaussian_blur, make_baseline
from ..errors import MMXAIError
from ..utils.model_state import preserved_model_state

__all__ = [
    'get_adapter', 'auc', 'gaussian_blur', 'make_baseline', 'unit_labels',
    'pixel_ranks', 'deletion_insertion_curve', 'average_drop',
    'pointing_game', 'temporal_grounding'
]

UNITS = ('cell', 'supervoxel')


def get_adapter(model_or_adapter):
    """An adapter from a recognizer (wrappers stripped) or an adapter."""
    if hasattr(model_or_adapter, 'scores') and hasattr(
            model_or_adapter, 'to_video'):
        return model_or_adapter
    from ..adapters import build_adapter
    return build_adapter(model_or_adapter)


def _maps_like(maps: Tensor, video: Tensor) -> Tensor:
    """``[B, T, H, W]`` or ``[B, V, T, H, W]`` -> ``[B, V, T, H, W]`` float."""
    b, v, _, t, h, w = video.shape
    maps = torch.as_tensor(maps).to(video.device).float()
    if maps.dim() == 4:
        maps = maps.unsqueeze(1)
    if maps.dim() != 5 or maps.shape[0] != b or maps.shape[2:] != (t, h, w) \
            or maps.shape[1] not in (1, v):
        raise MMXAIError(f'maps {tuple(maps.shape)} do not match the inputs: '
                         f'expected [{b}, {v}, {t}, {h}, {w}]')
    return maps.expand(b, v, t, h, w)


def auc(curve: Tensor) -> Tensor:
    """Trapezoid AUC of curves ``[..., n + 1]`` over ``[0, 1]``:
    ``(sum_i p_i - p_0 / 2 - p_n / 2) / n``."""
    n = curve.shape[-1] - 1
    if n < 1:
        raise MMXAIError('a curve needs at least two points')
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n


def unit_labels(maps_shape: Sequence[int], unit: str = 'cell',
                cell_size: Sequence[int] = (1, 16, 16),
                video: Optional[Tensor] = None, n_segments: int = 200,
                compactness: float = 10.0,
                segments: Optional[Tensor] = None) -> Tensor:
    """Unit id per pixel, ``[B, V, T, H, W]`` long (ids ``0..N-1`` per view).

    ``'cell'``: a grid of ``cell_size = (t, h, w)`` cells (the last ones may
    be smaller). ``'supervoxel'``: ``segments`` if given, else SLIC
    (scikit-image) on each view of ``video`` ``[B, V, C, T, H, W]``.
    """
    b, v, t, h, w = maps_shape
    if unit == 'cell':
        ct, ch, cw = (int(c) for c in cell_size)
        if min(ct, ch, cw) < 1:
            raise MMXAIError(f'cell_size must be positive, got {cell_size}')
        gh, gw = -(-h // ch), -(-w // cw)
        ti = torch.arange(t) // ct
        hi = torch.arange(h) // ch
        wi = torch.arange(w) // cw
        ids = (ti.view(-1, 1, 1) * gh + hi.view(1, -1, 1)) * gw + wi.view(
            1, 1, -1)
        return ids.expand(b, v, t, h, w)
    if unit != 'supervoxel':
        raise MMXAIError(f"unknown unit '{unit}': use one of "
                         f'{", ".join(UNITS)}')
    if segments is not None:
        seg = torch.as_tensor(segments).long()
        if seg.dim() == 4:
            seg = seg.unsqueeze(1)
        seg = seg.expand(b, v, t, h, w)
    else:
        if video is None:
            raise MMXAIError('supervoxel units need the video (or segments)')
        from skimage.segmentation import slic
        seg = torch.empty((b, v, t, h, w), dtype=torch.long)
        for i in range(b):
            for j in range(v):
                x = video[i, j].detach().float().cpu()  # [C, T, H, W]
                x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
                arr = x.permute(1, 2, 3, 0).numpy().astype(np.float64)
                lab = slic(arr, n_segments=n_segments,
                           compactness=compactness, channel_axis=-1,
                           convert2lab=arr.shape[-1] == 3, start_label=0)
                seg[i, j] = torch.from_numpy(lab.astype(np.int64))
    # relabel to consecutive ids per view
    out = torch.empty_like(seg)
    for i in range(b):
        for j in range(v):
            _, inv = torch.unique(seg[i, j], return_inverse=True)
            out[i, j] = inv
    return out


def pixel_ranks(maps: Tensor, labels: Tensor,
                reduce: str = 'mean') -> Tuple[Tensor, Tensor]:
    """Rank of each pixel's unit by attribution (0 = most important).

    Args:
        maps: ``[B, V, T, H, W]``.
        labels: unit ids, same shape.
        reduce: unit score ``'mean'`` or ``'sum'`` of the map over the unit.
    Returns:
        ``ranks [B, V, T, H, W]`` long and ``num_units [B, V]`` long. Ties
        keep the lower unit id first.
    """
    b, v = maps.shape[:2]
    ranks = torch.empty(labels.shape, dtype=torch.long)
    counts = torch.empty((b, v), dtype=torch.long)
    for i in range(b):
        for j in range(v):
            lab = labels[i, j].reshape(-1).cpu()
            m = maps[i, j].reshape(-1).detach().float().cpu()
            n = int(lab.max()) + 1
            score = torch.zeros(n).index_add_(0, lab, m)
            if reduce == 'mean':
                score = score / torch.bincount(lab, minlength=n).clamp_min(1)
            order = torch.argsort(-score, stable=True)
            unit_rank = torch.empty(n, dtype=torch.long)
            unit_rank[order] = torch.arange(n)
            ranks[i, j] = unit_rank[lab].view(labels.shape[2:])
            counts[i, j] = n
    return ranks.to(maps.device), counts.to(maps.device)


def _target_probs(adapter, inputs: Tensor, targets: Tensor) -> Tensor:
    """``[N]`` softmax probability of ``targets [N]`` on ``inputs``."""
    with torch.inference_mode():
        probs = adapter.scores(inputs).float().softmax(-1)
    return probs.gather(1, targets.view(-1, 1).to(probs.device)).view(-1)


def _as_targets(target: Union[int, Sequence[int], Tensor], batch: int,
                device) -> Tensor:
    t = torch.as_tensor(target, dtype=torch.long, device=device).view(-1)
    if t.numel() == 1:
        t = t.repeat(batch)
    if t.numel() != batch:
        raise MMXAIError(f'{t.numel()} targets given for a batch of {batch}')
    return t


def ranked_units(video: Tensor, maps: Tensor, target, baseline: Baseline,
                 blur_sigma: float, unit: str, cell_size: Sequence[int],
                 n_segments: int, segments: Optional[Tensor]):
    """What the curve metrics share: ``maps`` shaped like ``video``
    ``[B, V, C, T, H, W]``, ``targets [B]``, the removal ``baseline``
    video, and each pixel's unit rank and the units' voxel counts
    (:func:`pixel_ranks` of the cells or supervoxels)."""
    maps = _maps_like(maps, video)
    targets = _as_targets(target, video.shape[0], video.device)
    base = make_baseline(video, baseline, blur_sigma)
    labels = unit_labels(maps.shape, unit, cell_size, video, n_segments,
                         compactness=10.0, segments=segments)
    ranks, counts = pixel_ranks(maps, labels.to(maps.device),
                                reduce='mean' if unit == 'cell' else 'sum')
    return maps, targets, base, ranks, counts


def deletion_insertion_curve(model_or_adapter: Union[nn.Module, object],
                             inputs: Tensor,
                             maps: Tensor,
                             target: Union[int, Sequence[int], Tensor],
                             steps: int = 128,
                             unit: str = 'cell',
                             baseline: Baseline = 'fade',
                             batch_size: int = 16,
                             mode: str = 'deletion',
                             cell_size: Sequence[int] = (1, 16, 16),
                             blur_sigma: float = 10.0,
                             n_segments: int = 200,
                             segments: Optional[Tensor] = None
                             ) -> Tuple[Tensor, Tensor]:
    """Deletion or insertion curve of the target's probability.

    Units (cells or supervoxels) are ranked by attribution; at step ``i`` of
    ``steps`` the top ``round(i * N / steps)`` units of every view are
    replaced by the baseline (deletion) or copied from the video onto the
    baseline (insertion). The ``steps + 1`` perturbed clips of a sample are
    scored in chunks of ``batch_size`` forwards.

    Args:
        model_or_adapter: a recognizer or its mmxai adapter.
        inputs: preprocessed model inputs (B samples).
        maps: ``[B, V, T, H, W]`` or ``[B, T, H, W]`` attributions.
        target: one class, or ``[B]`` classes.
        steps: number of steps n (curve has n + 1 points).
        unit: ``'cell'`` or ``'supervoxel'``.
        baseline: the removal value (:mod:`mmxai.baselines`): ``'fade'``
            (0 after normalisation), ``'blur'`` (each frame blurred,
            ``blur_sigma`` px), ...
        batch_size: perturbed clips per forward.
        mode: ``'deletion'`` or ``'insertion'``.
    Returns:
        ``curve [B, steps + 1]`` softmax probabilities and ``auc [B]``.
    """
    if mode not in ('deletion', 'insertion'):
        raise MMXAIError(f"unknown mode '{mode}': deletion or insertion")
    if steps < 1 or batch_size < 1:
        raise MMXAIError('steps and batch_size must be >= 1')
    adapter = get_adapter(model_or_adapter)
    model = adapter.model
    with preserved_model_state(model), torch.inference_mode():
        model.eval()
        video = adapter.to_video(inputs.detach())
        b = video.shape[0]
        maps, targets, base, ranks, counts = ranked_units(
            video, maps, target, baseline, blur_sigma, unit, cell_size,
            n_segments, segments)
        curve = torch.empty(b, steps + 1)
        step_ids = torch.arange(steps + 1, device=video.device)
        for i in range(b):
            # units removed/inserted per step and view: [S, V]
            k = torch.round(step_ids.view(-1, 1).double() *
                            counts[i].view(1, -1).double() / steps).long()
            for s0 in range(0, steps + 1, batch_size):
                ks = k[s0:s0 + batch_size]
                mask = ranks[i].unsqueeze(0) < ks.view(*ks.shape, 1, 1, 1)
                mask = mask.unsqueeze(2)  # [S, V, 1, T, H, W]
                if mode == 'deletion':
                    x = torch.where(mask, base[i], video[i])
                else:
                    x = torch.where(mask, video[i], base[i])
                probs = _target_probs(adapter, adapter.from_video(x),
                                      targets[i].repeat(x.shape[0]))
                curve[i, s0:s0 + x.shape[0]] = probs.cpu()
    return curve, auc(curve)


def average_drop(model_or_adapter: Union[nn.Module, object],
                 inputs: Tensor,
                 maps: Tensor,
                 target: Union[int, Sequence[int], Tensor],
                 blur_sigma: float = 10.0) -> Tuple[Tensor, Tensor]:
    """Average-drop terms (Chattopadhay et al.): per sample
    ``100 * max(0, y - o) / y`` with ``y`` the target's probability on the
    clip and ``o`` on ``map * x + (1 - map) * blur(x)`` (maps in [0, 1]).

    Returns:
        ``drop [B]`` (percent) and ``increase [B]`` (bool: ``o > y``).
    """
    adapter = get_adapter(model_or_adapter)
    model = adapter.model
    with preserved_model_state(model), torch.inference_mode():
        model.eval()
        video = adapter.to_video(inputs.detach())
        b = video.shape[0]
        m = _maps_like(maps, video).clamp(0, 1).unsqueeze(2)
        targets = _as_targets(target, b, video.device)
        masked = m * video + (1 - m) * gaussian_blur(video, blur_sigma)
        y = _target_probs(adapter, inputs, targets)
        o = _target_probs(adapter, adapter.from_video(masked), targets)
    drop = 100 * (y - o).clamp_min(0) / y.clamp_min(1e-12)
    return drop.cpu(), (o > y).cpu()


def _max_position(m: Tensor) -> Tensor:
    """Mean coordinates of all maxima of ``m`` (any dims)."""
    pos = (m == m.max()).nonzero().float()
    return pos.mean(0)


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float = 15.0,
                  mode: str = 'frame') -> Tuple[int, int]:
    """Pointing game hits and misses for one view's map.

    Args:
        maps: ``[T, H, W]``.
        masks: bool ``[T, H, W]`` ground truth (frames without any True pixel
            are not annotated and not counted).
        tolerance: pixels; a hit when the maximum lies within this distance
            of the ground truth (15 px at 224 in Zhang et al.).
        mode: ``'frame'``: one trial per annotated frame (the mean position of
            that frame's maxima); ``'volume'``: one trial per clip, the mean
            (t, y, x) of all global-maximum voxels.
    Returns:
        ``(hits, misses)``.
    """
    maps = torch.as_tensor(maps).float().cpu()
    masks = torch.as_tensor(masks).bool().cpu()
    if maps.shape != masks.shape or maps.dim() != 3:
        raise MMXAIError(f'maps {tuple(maps.shape)} and masks '
                         f'{tuple(masks.shape)} must both be [T, H, W]')

    def near(points: Tensor, target: Tensor) -> bool:
        gt = target.nonzero().float()
        if gt.numel() == 0:
            return False
        return bool(((gt - points)**2).sum(-1).min().sqrt() <= tolerance)

    if mode == 'volume':
        if not masks.any():
            return 0, 0
        p = _max_position(maps)
        t = int(round(float(p[0])))
        hit = near(p[1:], masks[t]) if masks[t].any() else False
        return int(hit), int(not hit)
    if mode != 'frame':
        raise MMXAIError(f"unknown pointing game mode '{mode}': "
                         'frame or volume')
    hits = misses = 0
    for t in range(maps.shape[0]):
        if not masks[t].any():
            continue
        if near(_max_position(maps[t]), masks[t]):
            hits += 1
        else:
            misses += 1
    return hits, misses


def temporal_grounding(maps: Tensor, frames: Tensor) -> bool:
    """Hit when the frame with the largest attribution sum is a ground-truth
    frame. ``maps [T, H, W]``, ``frames`` bool ``[T]`` (or frame indices)."""
    maps = torch.as_tensor(maps).float().cpu()
    frames = torch.as_tensor(frames).cpu()
    t = maps.shape[0]
    if frames.dtype != torch.bool:
        sel = torch.zeros(t, dtype=torch.bool)
        idx = frames.long().view(-1)
        sel[idx[(idx >= 0) & (idx < t)]] = True
        frames = sel
    if frames.shape != (t, ):
        raise MMXAIError(f'frames must be [T={t}] booleans or indices')
    return bool(frames[int(maps.clamp_min(0).flatten(1).sum(-1).argmax())])
