"""Spatio-temporal localisation scores of one map against a known evidence
tube, and the map baselines they are compared with (plain functions).

Maps are ``[T, H, W]`` (one view at the model's input geometry); masks are
bool ``[T, H, W]`` (the evidence pixels of the frames where it happens);
``frames`` is bool ``[T]`` or a sequence of frame indices.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import MMXAIError
from .functional import pointing_game, temporal_grounding

__all__ = ['st_pointing_game', 'energy_in_tube', 'temporal_energy',
           'temporal_grounding_hit', 'localization_scores', 'random_map',
           'centre_map', 'scaled_tolerance']


def _check(maps, masks) -> Tuple[Tensor, Tensor]:
    maps = torch.as_tensor(maps).detach().float().cpu()
    masks = torch.as_tensor(masks).bool().cpu()
    if maps.dim() != 3 or maps.shape != masks.shape:
        raise MMXAIError(f'map {tuple(maps.shape)} and mask '
                         f'{tuple(masks.shape)} must both be [T, H, W]')
    return maps, masks


def _frames_mask(frames, t: int) -> Tensor:
    frames = torch.as_tensor(frames).cpu()
    if frames.dtype == torch.bool:
        if frames.shape != (t, ):
            raise MMXAIError(f'frames must be [T={t}] booleans or indices')
        return frames
    sel = torch.zeros(t, dtype=torch.bool)
    idx = frames.long().view(-1)
    sel[idx[(idx >= 0) & (idx < t)]] = True
    return sel


def scaled_tolerance(size: int, tolerance: float = 15.0,
                     reference: int = 224) -> float:
    """Pointing tolerance in pixels for an input of ``size`` (shorter side):
    Zhang et al.'s 15 px at 224, scaled."""
    return float(tolerance) * float(size) / float(reference)


def st_pointing_game(maps, masks, tolerance: float = 0.0) -> bool:
    """Spatio-temporal pointing game for one clip: a hit when the mean
    position of the map's global-maximum voxels falls in an evidence frame
    within ``tolerance`` pixels of the evidence (the 3D version of
    algorithms.md section 7; :func:`pointing_game` ``mode='volume'``).

    Args:
        maps: ``[T, H, W]``.
        masks: bool ``[T, H, W]``, at least one True voxel.
    """
    maps, masks = _check(maps, masks)
    if not masks.any():
        raise MMXAIError('the ground-truth mask is empty: nothing to point at')
    hits, _ = pointing_game(maps, masks, tolerance, mode='volume')
    return bool(hits)


def energy_in_tube(maps, masks) -> float:
    """Share of the positive map mass inside the evidence tube:
    ``sum(relu(M) * mask) / sum(relu(M))`` (0 for a map with no positive
    mass). The tube's own volume share is the score of a uniform map."""
    maps, masks = _check(maps, masks)
    pos = maps.clamp_min(0)
    total = float(pos.sum())
    return float((pos * masks).sum()) / total if total > 0 else 0.0


def temporal_energy(maps, frames) -> float:
    """Share of the positive map mass in the evidence frames."""
    maps = torch.as_tensor(maps).detach().float().cpu()
    sel = _frames_mask(frames, maps.shape[0])
    per_frame = maps.clamp_min(0).flatten(1).sum(-1)
    total = float(per_frame.sum())
    return float(per_frame[sel].sum()) / total if total > 0 else 0.0


def temporal_grounding_hit(maps, frames) -> bool:
    """Temporal grounding on one clip with known evidence frames: a hit when
    the frame with the largest positive attribution sum is an evidence frame
    (Li et al.'s test without concatenating clips; chance level is the share
    of evidence frames)."""
    maps = torch.as_tensor(maps).detach().float().cpu()
    return bool(temporal_grounding(maps, _frames_mask(frames,
                                                      maps.shape[0])))


def localization_scores(maps, masks, frames=None,
                        tolerance: float = 0.0) -> Dict[str, float]:
    """All localisation scores of one ``[T, H, W]`` map: ``pointing`` (0/1),
    ``energy``, ``temporal_grounding`` (0/1) and ``temporal_energy``.
    ``frames`` defaults to the frames where ``masks`` has evidence."""
    maps, masks = _check(maps, masks)
    if frames is None:
        frames = masks.flatten(1).any(-1)
    return dict(pointing=float(st_pointing_game(maps, masks, tolerance)),
                energy=energy_in_tube(maps, masks),
                temporal_grounding=float(temporal_grounding_hit(maps,
                                                                frames)),
                temporal_energy=temporal_energy(maps, frames))


def random_map(shape: Sequence[int],
               generator: Optional[torch.Generator] = None,
               static: bool = False) -> Tensor:
    """Baseline: i.i.d. uniform noise in [0, 1] of ``shape`` (e.g.
    ``[T, H, W]``). ``static``: one noise frame repeated along the
    third-to-last axis (time), so deletion/insertion by this map changes the
    same pixels in every frame instead of flickering, which a motion model
    reads as motion (an artifact control, not Petsiuk et al.'s baseline)."""
    shape = tuple(int(s) for s in shape)
    if not static:
        return torch.rand(shape, generator=generator)
    if len(shape) < 3:
        raise ValueError(f'a static map needs [..., T, H, W], got {shape}')
    one = torch.rand(shape[:-3] + (1, ) + shape[-2:], generator=generator)
    return one.expand(shape).clone()


def centre_map(shape: Sequence[int], sigma: Union[float, None] = None
               ) -> Tensor:
    """Baseline: a Gaussian centred in every frame (centre bias), the same
    for all frames. ``shape`` ends with ``(H, W)``; ``sigma`` defaults to a
    quarter of the shorter side. Values in (0, 1], maximum 1 at the centre.
    """
    *lead, h, w = (int(s) for s in shape)
    sigma = float(sigma or min(h, w) / 4)
    y = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    g = torch.exp(-(y.view(-1, 1)**2 + x.view(1, -1)**2) / (2 * sigma**2))
    return g.expand(*lead, h, w).clone()
