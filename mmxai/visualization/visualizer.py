"""``ExplanationVisualizer``: MMAction2's ``ActionVisualizer`` with heat-map
overlays and the labels it never draws (1.2.0 checks ``gt_labels`` /
``pred_labels``, which ``ActionDataSample`` does not have).

Frames go to every vis backend (Local, Tensorboard, W&B) through
``add_video``. MMAction2's ``LocalVisBackend`` writes GIF/MP4 through
moviepy's removed ``moviepy.editor``; for local backends those two formats
are written here with OpenCV/Pillow instead.
"""
import os.path as osp
from typing import Any, List, Optional, Sequence

import numpy as np
from mmaction.visualization import ActionVisualizer
from mmengine.dist import master_only
from mmengine.visualization import LocalVisBackend
from torch import Tensor

from ..errors import InputError
from ..registry import VISUALIZERS
from .colormap import (DEFAULT_SIGNED_CMAP, as_rgb_frames, resolve_scale,
                       to_numpy)
from .overlay import draw_label_panel, overlay_heatmap
from .video_writer import write_gif, write_video

__all__ = ['ExplanationVisualizer', 'label_lines']


def _class_name(c: int, classes: Optional[Sequence[str]]) -> str:
    if classes is not None and 0 <= c < len(classes):
        return f'{c} ({classes[c]})'
    return str(c)


def label_lines(data_sample: Any = None,
                classes: Optional[Sequence[str]] = None,
                target: Optional[int] = None,
                draw_gt: bool = True, draw_pred: bool = True,
                draw_score: bool = True) -> List[str]:
    """Text lines: ground truth, prediction (with probability), explained
    class. Reads ``gt_label`` and ``pred_score`` of an ``ActionDataSample``."""
    lines = []
    gt = getattr(data_sample, 'gt_label', None) if data_sample else None
    if draw_gt and gt is not None and to_numpy(gt).size:
        lines.append('GT: ' + ', '.join(
            _class_name(int(c), classes) for c in to_numpy(gt).reshape(-1)))
    score = getattr(data_sample, 'pred_score', None) if data_sample else None
    if draw_pred and score is not None and to_numpy(score).size:
        s = to_numpy(score).reshape(-1).astype(np.float64)
        c = int(s.argmax())
        text = 'pred: ' + _class_name(c, classes)
        if draw_score:
            text += f' {s[c]:.2f}'
        lines.append(text)
    if target is not None:
        lines.append('explained: ' + _class_name(int(target), classes))
    return lines


@VISUALIZERS.register_module()
class ExplanationVisualizer(ActionVisualizer):
    """Draws explanation overlays with labels and sends them to backends.

    Args:
        name: instance name (MMEngine's ``ManagerMixin``).
        vis_backends: backend configs (e.g. ``LocalVisBackend``,
            ``TensorboardVisBackend``, ``WandbVisBackend`` of MMAction2).
        save_dir: root folder of the backends.
        alpha: heat-map weight of the overlay.
        cmap: matplotlib colour map of non-negative maps.
        signed_cmap: diverging colour map of signed maps (centred at 0).
        min_size: frames are upscaled to this shorter side before the label
            panel is drawn, so text stays legible (0: never).
        panel: ``'top'``, ``'bottom'`` or ``'overlay'`` (see
            :func:`~mmxai.visualization.draw_label_panel`).
    """

    def __init__(self, name: str = 'explanation_visualizer',
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None, alpha: float = 0.5,
                 cmap: str = 'jet', min_size: int = 256,
                 panel: str = 'top', signed_cmap: str = DEFAULT_SIGNED_CMAP,
                 **kwargs) -> None:
        super().__init__(name=name, vis_backends=vis_backends,
                         save_dir=save_dir, **kwargs)
        self.alpha = alpha
        self.cmap = cmap
        self.signed_cmap = signed_cmap
        self.min_size = min_size
        self.panel = panel

    def draw_explanation(self, frames: Any, maps: Any = None,
                         data_sample: Any = None,
                         target: Optional[int] = None,
                         draw_gt: bool = True, draw_pred: bool = True,
                         draw_score: bool = True,
                         valid_mask: Any = None,
                         signed: Optional[bool] = None) -> np.ndarray:
        """Overlay ``maps [T, H, W]`` on ``frames [T, H, W, 3]`` (uint8 RGB)
        and add the label panel; returns uint8 ``[T, H', W', 3]``.

        ``signed``: None: maps with negative values are drawn with
        ``signed_cmap`` centred at 0, scaled by their largest magnitude;
        True: maps in [-1, 1] drawn so; False: maps in [0, 1] with ``cmap``.
        """
        out = as_rgb_frames(frames)
        if out.ndim != 4:
            raise InputError(f'frames must be [T, H, W, 3], got shape '
                             f'{tuple(out.shape)}')
        if maps is not None:
            maps, signed, _ = resolve_scale(maps, signed)
            out = overlay_heatmap(out, maps, alpha=self.alpha,
                                  cmap=self.signed_cmap if signed
                                  else self.cmap, valid_mask=valid_mask,
                                  signed=signed)
        classes = (self.dataset_meta or {}).get('classes')
        lines = label_lines(data_sample, classes, target, draw_gt, draw_pred,
                            draw_score)
        if lines:
            out = draw_label_panel(out, lines, position=self.panel,
                                   min_size=self.min_size)
        return out

    @master_only
    def add_datasample(self, name: str, video: Any,
                       data_sample: Any = None, maps: Any = None,
                       target: Optional[int] = None, draw_gt: bool = True,
                       draw_pred: bool = True, draw_score: bool = True,
                       out_type: str = 'img', out_path: Optional[str] = None,
                       step: int = 0, fps: int = 4, valid_mask: Any = None,
                       target_resolution: Optional[tuple] = None,
                       signed: Optional[bool] = None,
                       **kwargs) -> np.ndarray:
        """Draw an explanation and save it to every backend.

        Args:
            name: identifier (folder/file name in the backends).
            video: uint8 RGB frames ``[T, H, W, 3]``, or anything
                ``ActionVisualizer`` loads (a path, a frame folder).
            data_sample: ``ActionDataSample`` (``gt_label``, ``pred_score``).
            maps: ``[T, H, W]`` in [0, 1], or signed (resized to the frames;
                see ``signed`` of :meth:`draw_explanation`).
            target: the explained class, drawn as a third line.
            out_type: ``'img'`` (PNG frames), ``'gif'`` or ``'video'``.
            out_path: write to this file/folder only, ignoring backends.
        Returns:
            the drawn frames ``[T, H', W', 3]``.
        """
        frames = video if isinstance(video, (np.ndarray, Tensor)) else \
            np.stack(self._load_video(video, target_resolution))[..., ::-1]
        drawn = self.draw_explanation(frames, maps, data_sample, target,
                                      draw_gt, draw_pred, draw_score,
                                      valid_mask, signed)
        if out_path is not None:
            _write_local(osp.dirname(out_path) or '.',
                         osp.basename(out_path), drawn, step, fps, out_type)
        else:
            self.add_video(name, drawn, step=step, fps=fps,
                           out_type=out_type)
        return drawn

    @master_only
    def add_video(self, name: str, image: np.ndarray, step: int = 0,
                  fps: int = 4, out_type: str = 'img') -> None:
        """Send frames ``[T, H, W, 3]`` uint8 RGB to every backend."""
        for backend in self._vis_backends.values():
            if isinstance(backend, LocalVisBackend) and out_type in (
                    'gif', 'video'):
                backend.experiment  # noqa: B018 - creates its folders
                _write_local(backend._save_dir, name, image, step, fps,
                             out_type)
            else:
                backend.add_video(name, image, step=step, fps=fps,
                                  out_type=out_type)


def _write_local(folder: str, name: str, frames: np.ndarray, step: int,
                 fps: int, out_type: str) -> str:
    stem = osp.splitext(name)[0]
    if out_type == 'gif':
        return write_gif(osp.join(folder, stem + '.gif'), frames, fps=fps)
    if out_type == 'video':
        return write_video(osp.join(folder, stem + '.mp4'), frames, fps=fps)
    if out_type != 'img':
        raise InputError(f"out_type must be 'img', 'gif' or 'video', got "
                         f'{out_type!r}')
    import cv2
    import os
    out = osp.join(folder, name, f'frames_{step}')
    os.makedirs(out, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(osp.join(out, f'{i}.png'), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return out
