"""Heat-map overlays and "focus" frames (Saliency Tubes, Stergiou et al. 2019)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import cv2
import numpy as np

from mmxai.errors import InputError

from .colormap import (CmapLike, as_map, as_rgb_frames, colorize,
                       colormap_lut, resolve_scale, to_numpy)


def resize_maps(maps: Any, size: Tuple[int, int]) -> np.ndarray:
    """Bilinearly resize maps ``[..., h, w]`` to ``[..., H, W]`` with ``size=(H, W)``.

    Returns float32; NaN is replaced by 0 first. No copy is made when the size
    already matches.
    """
    m = as_map(maps)
    if m.ndim < 2:
        raise InputError(f'maps must be [..., H, W], got shape {tuple(m.shape)}')
    H, W = int(size[0]), int(size[1])
    if m.shape[-2:] == (H, W):
        return m
    lead = m.shape[:-2]
    flat = m.reshape(-1, *m.shape[-2:])
    out = np.empty((flat.shape[0], H, W), np.float32)
    for i, x in enumerate(flat):  # cv2 takes (width, height)
        out[i] = cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR)
    return out.reshape(*lead, H, W)


def _prepare(frames: Any, maps: Any) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Frames ``[T, H, W, 3]`` uint8 and maps ``[T, H, W]`` float32 at frame size.

    A single frame ``[H, W, 3]`` with a map ``[H, W]`` is accepted (``single=True``);
    a map with T=1 (or ``[H, W]``) is broadcast over all frames.
    """
    f = as_rgb_frames(frames)
    m = as_map(maps)
    single = f.ndim == 3
    if single:
        f = f[None]
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got shape {tuple(f.shape)}')
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise InputError(f'maps must be [T, H, W], got shape {tuple(m.shape)}')
    T, H, W = f.shape[:3]
    if m.shape[0] not in (1, T):
        raise InputError(f'maps have {m.shape[0]} frames but frames have {T}')
    m = resize_maps(m, (H, W))
    if m.shape[0] != T:
        m = np.broadcast_to(m, (T, H, W))
    return f, m, single


def _prepare_mask(valid_mask: Any, T: int, H: int, W: int) -> np.ndarray:
    """``valid_mask`` ``[H, W]`` / ``[T, H, W]`` as bool ``[T, H, W]`` (nearest resize)."""
    v = to_numpy(valid_mask).astype(bool)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[0] not in (1, T):
        raise InputError(f'valid_mask must be [H, W] or [T, H, W] with T={T}, got shape {tuple(v.shape)}')
    if v.shape[1:] != (H, W):
        v = np.stack([cv2.resize(x.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
                      for x in v]).astype(bool)
    return np.broadcast_to(v, (T, H, W))


def overlay_heatmap(frames: Any,
                    maps: Any,
                    alpha: float = 0.5,
                    cmap: Optional[CmapLike] = None,
                    valid_mask: Optional[Any] = None,
                    signed: Optional[bool] = None) -> np.ndarray:
    """Blend colour-mapped maps onto frames: ``(1 - alpha) * frame + alpha * colour``
    (signed maps: ``alpha * |map|`` per pixel).

    Args:
        frames: uint8 RGB ``[T, H, W, 3]`` (or one frame ``[H, W, 3]``).
        maps: ``[T, H, W]`` in [0, 1], or signed in [-1, 1] (``[1, h, w]``/
            ``[h, w]`` broadcast over time); resized bilinearly when its H, W
            differ from the frames'.
        alpha: weight of the heat map (0.5 = the 50/50 blend of Saliency Tubes).
        cmap: matplotlib colour map; default ``'jet'``, or ``'RdBu_r'`` for
            signed maps.
        valid_mask: bool ``[T, H, W]`` or ``[H, W]``; where False (pixels the
            model never saw) the plain frame is shown, bit for bit.
        signed: draw on a diverging scale centred at 0 (0 gets the colour
            map's middle colour). None: signed when ``maps`` has negative
            values (:func:`~mmxai.visualization.is_signed`), and then maps
            are scaled by :func:`~mmxai.visualization.signed_scale`; True:
            maps are taken as already in [-1, 1].

    Returns:
        uint8 ``[T, H, W, 3]`` (``[H, W, 3]`` for a single frame).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f'alpha must be in [0, 1], got {alpha}')
    m, signed, cmap = resolve_scale(maps, signed, cmap)
    f, m, single = _prepare(frames, m)
    if not signed and float(alpha) == 0.5:
        # the numbers of the general case below, in integers (about 5x
        # faster; the long-video overlay draws every output frame):
        # rint((f + c) / 2) rounds half to even, q + (s & q & 1)
        idx = np.rint(np.clip(m, 0.0, 1.0) * 255.0).astype(np.uint8)
        s = f.astype(np.uint16) + np.take(colormap_lut(cmap), idx, axis=0)
        q = s >> 1
        out = (q + (s & q & 1)).astype(np.uint8)
    else:
        heat = colorize(m, cmap, signed=signed).astype(np.float32)
        # signed: the weight follows |map|, so where the evidence is 0 the
        # frame shows as it is (a uniform blend washes it out with the
        # neutral colour)
        a = alpha * np.abs(m)[..., None].astype(np.float32) if signed \
            else alpha
        out = (1.0 - a) * f.astype(np.float32) + a * heat
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if valid_mask is not None:
        v = _prepare_mask(valid_mask, *f.shape[:3])
        out = np.where(v[..., None], out, f)
    return out[0] if single else out


def focus_frames(frames: Any, maps: Any, valid_mask: Optional[Any] = None) -> np.ndarray:
    """RGBA "focus" frames: the frame's colours with the map as alpha channel.

    Args:
        frames: uint8 RGB ``[T, H, W, 3]`` (or ``[H, W, 3]``).
        maps: ``[T, H, W]`` in [0, 1], clipped; resized bilinearly if needed.
        valid_mask: optional bool ``[T, H, W]``/``[H, W]``; alpha is 0 where False.

    Returns:
        uint8 ``[T, H, W, 4]`` with alpha = ``round(255 * map)``.
    """
    f, m, single = _prepare(frames, maps)
    a = np.clip(np.rint(np.clip(m, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    if valid_mask is not None:
        a = np.where(_prepare_mask(valid_mask, *f.shape[:3]), a, 0).astype(np.uint8)
    out = np.concatenate([f, a[..., None]], axis=-1)
    return out[0] if single else out


# ----------------------------------------------------------------------------
# Text labels
# ----------------------------------------------------------------------------
_MIN_FONT_PX = 10


_FONTS: dict = {}


def _font_path() -> Optional[str]:
    try:
        from matplotlib import font_manager
        return font_manager.findfont('DejaVu Sans', fallback_to_default=True)
    except Exception:  # pragma: no cover - matplotlib without fonts
        return None


def _font(size: int):
    """DejaVu Sans (shipped with matplotlib) at ``size`` px; Pillow's default as fallback."""
    from PIL import ImageFont
    size = int(size)
    if size not in _FONTS:
        path = _font_path()
        try:
            _FONTS[size] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
        except Exception:  # pragma: no cover
            _FONTS[size] = ImageFont.load_default(size)
    return _FONTS[size]


def _fit_lines(lines, font, max_w: float):
    """Truncate each line with an ellipsis so it fits ``max_w`` pixels."""
    out = []
    for line in lines:
        if font.getlength(line) <= max_w:
            out.append(line)
            continue
        cut = line
        while cut and font.getlength(cut + '\u2026') > max_w:
            cut = cut[:-1]
        out.append(cut + '\u2026')
    return out


def _text_mask(lines, width: int, height: int, font, pad: int, line_h: int) -> np.ndarray:
    """Anti-aliased text coverage in [0, 1]: float32 ``[height, width]``."""
    from PIL import Image, ImageDraw
    img = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, fill=255, font=font)
    return np.asarray(img, dtype=np.float32) / 255.0


def upscale_frames(frames: Any, min_size: int = 256, interpolation: str = 'linear') -> np.ndarray:
    """Resize frames ``[T, H, W, 3]`` so that ``min(H, W) >= min_size`` (aspect kept).

    Frames already large enough are returned unchanged. ``interpolation`` is
    ``'linear'`` or ``'nearest'`` (crisp pixels, e.g. for 8x8 feature-level maps).
    """
    f = as_rgb_frames(frames)
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got shape {tuple(f.shape)}')
    H, W = f.shape[1:3]
    if not min_size or min(H, W) >= min_size:
        return f
    if interpolation not in ('linear', 'nearest'):
        raise InputError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    s = float(min_size) / min(H, W)
    size = (max(1, int(round(W * s))), max(1, int(round(H * s))))
    flag = cv2.INTER_LINEAR if interpolation == 'linear' else cv2.INTER_NEAREST
    return np.stack([cv2.resize(x, size, interpolation=flag) for x in f])


def draw_label_panel(frames: Any,
                     lines: Any,
                     position: str = 'top',
                     min_size: int = 256,
                     font_size: Optional[int] = None,
                     text_color: Tuple[int, int, int] = (255, 255, 255),
                     bg_color: Tuple[int, int, int] = (0, 0, 0),
                     interpolation: str = 'linear') -> np.ndarray:
    """Draw text lines (e.g. ``'GT: jump'``, ``'pred: jump 0.93'``) on every frame.

    Args:
        frames: uint8 RGB ``[T, H, W, 3]``.
        lines: one list of strings for all frames, or a list of T such lists
            (per-frame text, e.g. a per-frame score).
        position: ``'top'`` / ``'bottom'``: a panel of ``bg_color`` above/below
            the frames; ``'overlay'``: text on a half-transparent box in the
            frame's top-left corner (frame height unchanged).
        min_size: frames are first upscaled (see :func:`upscale_frames`) so that
            their shorter side is at least this, keeping text legible on 64x64
            clips; 0 disables upscaling.
        font_size: pixel size; default ``max(10, W' // 20)``. Shrunk (down to
            10 px) so the longest line fits, then lines are cut with an ellipsis.
        text_color, bg_color: RGB.
        interpolation: ``'linear'`` or ``'nearest'`` for the upscaling.

    Returns:
        uint8 ``[T, H' (+ panel), W', 3]`` where ``H', W'`` are the upscaled size.
    """
    if position not in ('top', 'bottom', 'overlay'):
        raise InputError(f"position must be 'top', 'bottom' or 'overlay', got {position!r}")
    f = upscale_frames(frames, min_size, interpolation)
    T, H, W = f.shape[:3]
    if isinstance(lines, str):
        lines = [lines]
    lines = list(lines)
    if lines and not isinstance(lines[0], str):
        per_frame = [[str(x) for x in ls] for ls in lines]
        if len(per_frame) != T:
            raise InputError(f'got text for {len(per_frame)} frames but there are {T} frames')
    else:
        per_frame = [[str(x) for x in lines]] * T
    n_lines = max((len(ls) for ls in per_frame), default=0)
    if n_lines == 0:
        return f

    size = int(font_size) if font_size else max(_MIN_FONT_PX, W // 20)
    pad = max(2, size // 3)
    longest = max((ln for ls in per_frame for ln in ls), key=len, default='')
    font = _font(size)
    while size > _MIN_FONT_PX and font.getlength(longest) > W - 2 * pad:
        size -= 1
        pad = max(2, size // 3)
        font = _font(size)
    ascent, descent = font.getmetrics()
    line_h = ascent + descent + max(1, size // 6)
    ph = 2 * pad + n_lines * line_h

    fg = np.asarray(text_color, np.float32)
    bg = np.asarray(bg_color, np.float32)
    masks: dict = {}
    out = []
    for t in range(T):
        key = tuple(per_frame[t])
        if key not in masks:
            fitted = _fit_lines(key, font, W - 2 * pad)
            box_w = min(W, int(np.ceil(max((font.getlength(x) for x in fitted), default=0))) + 2 * pad)
            masks[key] = (_text_mask(fitted, W, ph, font, pad, line_h)[..., None], box_w)
        mask, box_w = masks[key]
        if position == 'overlay':
            img = f[t].astype(np.float32)
            h = min(ph, H)
            region = img[:h, :box_w]
            region = 0.5 * region + 0.5 * bg
            m = mask[:h, :box_w]
            img[:h, :box_w] = region * (1.0 - m) + fg * m
            out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        else:
            panel = np.clip(np.rint(bg * (1.0 - mask) + fg * mask), 0, 255).astype(np.uint8)
            parts = [panel, f[t]] if position == 'top' else [f[t], panel]
            out.append(np.concatenate(parts, axis=0))
    return np.stack(out)
