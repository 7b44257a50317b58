"""Normalisation of maps that keeps relative temporal importance."""
import torch


def minmax_normalize(maps: torch.Tensor, dims: int = 3,
                     eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise ``maps`` to [0, 1] jointly over the last ``dims`` dims.

    With ``dims=3`` and maps ``[B, V, T, H, W]`` every view is normalised over
    (T, H, W) together, so a frame that matters twice as much stays twice as
    bright (a per-frame normalisation would destroy that). Constant maps give 0.
    """
    flat = maps.flatten(-dims)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    out = (flat - lo) / (hi - lo).clamp_min(eps)
    out = torch.where((hi - lo) > eps, out, torch.zeros_like(out))
    return out.view_as(maps)
