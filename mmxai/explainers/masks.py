"""Random masks: RISE's shifted upsampling of low-resolution grids."""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def mask_cells(size: Sequence[int], cells: Sequence[int]) -> list:
    """Voxels per cell along (t, h, w): ``ceil(size / cells)``."""
    return [int(math.ceil(s / c)) for s, c in zip(size, cells)]


def upsample_shifted(grids: Tensor, size: Sequence[int],
                     generator: Optional[torch.Generator],
                     out: Optional[Tensor] = None,
                     shifts: Optional[Tensor] = None) -> Tensor:
    """RISE upsampling: ``[N, t, h, w]`` cell grids -> ``[N, T, H, W]``.

    Each grid is trilinearly upsampled to ``(cells + 1) * cell_size`` and
    cropped at a random offset in ``[0, cell_size)`` per axis (Petsiuk et
    al.), so cell borders fall anywhere. Offsets come from ``generator``.
    ``out``: an optional ``[N, T, H, W]`` float tensor to write into (on
    any device). ``shifts``: ``[N, 3]`` offsets drawn before (then
    ``generator`` is not used).
    """
    n, cells = grids.shape[0], grids.shape[1:]
    cell = mask_cells(size, cells)
    up = [(c + 1) * k for c, k in zip(cells, cell)]
    big = F.interpolate(grids[:, None].float(), size=up, mode='trilinear',
                        align_corners=False)[:, 0]
    if shifts is None:
        shifts = torch.stack([torch.randint(0, k, (n, ),
                                            generator=generator)
                              for k in cell], 1)
    shifts = shifts.tolist()
    if out is None:
        out = torch.empty((n, *size), dtype=big.dtype, device=big.device)
    t, h, w = size
    for i, (a, b, c) in enumerate(shifts):
        out[i] = big[i, a:a + t, b:b + h, c:c + w]
    return out
