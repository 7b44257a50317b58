"""Array conversion and colour mapping of explanation maps.

Everything here is pure numpy; torch tensors are accepted and converted with
``.detach().cpu().numpy()`` (torch itself is never imported).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Union

import numpy as np

from mmxai.errors import InputError

try:  # matplotlib >= 3.5
    from matplotlib import colormaps as _mpl_colormaps
except ImportError:  # pragma: no cover - very old matplotlib
    _mpl_colormaps = None
from matplotlib.colors import Colormap

CmapLike = Union[str, Colormap]

#: Percentile of |map| a signed map is scaled by (clipped above it).
SIGNED_PERCENTILE = 99.0

#: Default colour maps: non-negative maps in [0, 1], signed maps in [-1, 1].
DEFAULT_CMAP = 'jet'
DEFAULT_SIGNED_CMAP = 'RdBu_r'


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors via ``.detach().cpu()``)."""
    if hasattr(x, 'detach') and hasattr(x, 'cpu'):
        t = x.detach().cpu()
        if str(t.dtype) in ('torch.bfloat16', 'torch.float16'):
            t = t.float()  # numpy has no bfloat16
        return t.numpy()
    return np.asarray(x)


def as_map(maps: Any) -> np.ndarray:
    """Maps as float32 with NaN/inf replaced (NaN, -inf -> 0; +inf -> 1)."""
    m = to_numpy(maps)
    if m.dtype.kind not in 'biuf':
        raise InputError(f'maps must be numeric, got dtype {m.dtype}')
    m = m.astype(np.float32, copy=False)
    return np.nan_to_num(m, nan=0.0, posinf=1.0, neginf=0.0)


def as_rgb_frames(frames: Any) -> np.ndarray:
    """Frames as uint8 RGB ``[..., H, W, 3]``.

    Accepts uint8 ``[..., H, W, 3]``, grey ``[..., H, W, 1]`` (repeated to 3
    channels) and RGBA (alpha dropped). Float frames are taken as [0, 1] when
    their maximum is <= 1, else as [0, 255]; both are clipped and rounded.
    """
    f = to_numpy(frames)
    if f.ndim < 3 or f.shape[-1] not in (1, 3, 4):
        raise InputError(
            f'frames must be [..., H, W, 3] RGB (or 1/4 channels), got shape {tuple(f.shape)}')
    if f.dtype != np.uint8:
        f = f.astype(np.float32)
        f = np.nan_to_num(f, nan=0.0)
        if f.size and f.max() <= 1.0:
            f = f * 255.0
        f = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    elif f.shape[-1] == 4:
        f = f[..., :3]
    return np.ascontiguousarray(f)


def is_signed(maps: Any, rtol: float = 1e-6) -> bool:
    """Whether ``maps`` carry signed evidence: the rule of every output.

    A map is signed when its minimum is below ``-rtol * max|map|`` (the
    tolerance ignores float noise around 0). Signed maps are drawn with a
    diverging colour map centred at 0 (see :func:`signed_scale`).
    """
    m = as_map(maps)
    if m.size == 0:
        return False
    lo = float(m.min())
    return lo < 0 and -lo > rtol * float(np.abs(m).max())


def signed_scale(maps: Any, axis: Any = None,
                 percentile: float = SIGNED_PERCENTILE) -> np.ndarray:
    """Symmetric scale: ``clip(maps / P, -1, 1)``, ``P`` the ``percentile``-th
    percentile of ``|maps|`` (its maximum where that is 0), so 0 stays 0
    and a few extreme pixels (Integrated Gradients, saliency) do not leave
    the rest invisible (Captum's ``outlier_perc`` idea).

    ``axis``: the axes ``P`` is taken over (None: all), e.g. ``(1, 2, 3)``
    for one scale per view of ``[V, T, H, W]``; ``percentile=100``: the
    maximum.
    """
    m = as_map(maps)
    if not m.size:
        return m
    a = np.abs(m)
    peak = np.percentile(a, percentile, axis=axis, keepdims=True) \
        if percentile < 100 else a.max(axis=axis, keepdims=True)
    top = a.max(axis=axis, keepdims=True)
    peak = np.where(peak > 0, peak, top).astype(np.float32)
    out = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
    return np.clip(out, -1.0, 1.0)


def resolve_scale(maps: Any, signed: Any = None, cmap: Any = None):
    """``(maps, signed, cmap)`` as drawn.

    ``signed=None``: decided by :func:`is_signed`, and then maps are scaled
    by :func:`signed_scale` (over the whole array). ``signed=True``: maps
    are taken as already in [-1, 1]. ``cmap=None``: the default of the
    scale (``'jet'``, or ``'RdBu_r'`` for signed maps).
    """
    m = as_map(maps)
    if signed is None:
        signed = is_signed(m)
        if signed:
            m = signed_scale(m)
    signed = bool(signed)
    if cmap is None:
        cmap = DEFAULT_SIGNED_CMAP if signed else DEFAULT_CMAP
    return m, signed, cmap


@lru_cache(maxsize=64)
def _lut_by_name(name: str, n: int = 256) -> np.ndarray:
    try:
        cm = _mpl_colormaps[name] if _mpl_colormaps is not None else None
    except KeyError:
        cm = None
    if cm is None:
        raise InputError(f'unknown colour map {name!r} (use a matplotlib name, e.g. "jet")')
    return _lut_from_cmap(cm, n)


def _lut_from_cmap(cm: Colormap, n: int = 256) -> np.ndarray:
    rgba = cm(np.linspace(0.0, 1.0, n))
    return np.clip(np.rint(rgba[:, :3] * 255.0), 0, 255).astype(np.uint8)


def colormap_lut(cmap: CmapLike = 'jet', n: int = 256) -> np.ndarray:
    """The ``n``-entry RGB lookup table of a matplotlib colour map: uint8 ``[n, 3]``."""
    if isinstance(cmap, Colormap):
        return _lut_from_cmap(cmap, n)
    if not isinstance(cmap, str):
        raise InputError(f'cmap must be a matplotlib colour map or its name, got {type(cmap).__name__}')
    return _lut_by_name(cmap, n)


def colorize(maps: Any, cmap: CmapLike = 'jet', signed: bool = False) -> np.ndarray:
    """Map values in [0, 1] (or, ``signed``, in [-1, 1]) to RGB colours.

    Args:
        maps: float array of any shape, e.g. ``[T, H, W]``; clipped to [0, 1]
            ([-1, 1] when signed), NaN treated as 0.
        cmap: matplotlib colour map name or object.
        signed: a diverging scale centred at 0: -1, 0, 1 get the colour
            map's first, middle (exactly ``cmap(0.5)``) and last colour.

    Returns:
        uint8 ``[*maps.shape, 3]``.
    """
    if signed:  # odd table: 0 lands on its middle entry
        m = np.clip(as_map(maps), -1.0, 1.0)
        idx = np.rint((m + 1.0) * 127.0).astype(np.intp)
        return colormap_lut(cmap, 255)[idx]
    m = np.clip(as_map(maps), 0.0, 1.0)
    idx = np.rint(m * 255.0).astype(np.intp)
    return colormap_lut(cmap)[idx]
