"""Turn explanation maps into images, videos and figures.

Pure functions on numpy arrays (torch tensors are accepted); no model code.
Frames are uint8 RGB ``[T, H, W, 3]``; maps are float ``[T, H, W]`` in [0, 1].
"""
from .colormap import as_rgb_frames, colorize, colormap_lut, to_numpy
from .figures import plot_temporal_importance, save_montage, select_frames, temporal_importance
from .overlay import draw_label_panel, focus_frames, overlay_heatmap, resize_maps, upscale_frames
from .video_writer import atomic_path, write_gif, write_video
from .visualizer import ExplanationVisualizer, label_lines

__all__ = [
    'ExplanationVisualizer', 'label_lines',
    'as_rgb_frames', 'atomic_path', 'colorize', 'colormap_lut', 'draw_label_panel',
    'focus_frames', 'overlay_heatmap', 'plot_temporal_importance', 'resize_maps',
    'save_montage', 'select_frames', 'temporal_importance', 'to_numpy', 'upscale_frames',
    'write_gif', 'write_video',
]
