"""Turn explanation maps into images, videos and figures.

Pure functions on numpy arrays (torch tensors are accepted); no model code.
Frames are uint8 RGB ``[T, H, W, 3]``; maps are float ``[T, H, W]`` in [0, 1],
or signed in [-1, 1]. Signed maps (:func:`is_signed`: a negative value) are
drawn on a diverging colour map centred at 0 (``'RdBu_r'``: 0 is the neutral
middle colour, +-1 = +-P99(|map|), clipped); non-negative maps on ``'jet'``.
"""
from .colormap import (DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, as_rgb_frames, colorize,
                       colormap_lut, is_signed, resolve_scale, signed_scale, to_numpy)
from .figures import (plot_temporal_importance, save_montage, select_frames,
                      signed_temporal_importance, temporal_importance, wrap_title)
from .overlay import draw_label_panel, focus_frames, overlay_heatmap, resize_maps, upscale_frames
from .video_writer import atomic_path, write_gif, write_video
from .visualizer import ExplanationVisualizer, label_lines

__all__ = [
    'ExplanationVisualizer', 'label_lines', 'DEFAULT_CMAP', 'DEFAULT_SIGNED_CMAP',
    'is_signed', 'resolve_scale', 'signed_scale', 'signed_temporal_importance', 'wrap_title',
    'as_rgb_frames', 'atomic_path', 'colorize', 'colormap_lut', 'draw_label_panel',
    'focus_frames', 'overlay_heatmap', 'plot_temporal_importance', 'resize_maps',
    'save_montage', 'select_frames', 'temporal_importance', 'to_numpy', 'upscale_frames',
    'write_gif', 'write_video',
]
