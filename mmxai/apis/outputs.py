"""One video's files: the explanation mapped back onto the original frames,
written by the one :class:`~mmxai.outputs.OutputWriter` (layout
:data:`~mmxai.outputs.VIDEO_LAYOUT`: ``overlay.mp4``, ``overlay.gif``,
``montage.png``, ``temporal_importance.png``, ``maps.npz``,
``explanation.json``, plus the method's registered extras).

``maps.npz`` of a video holds, by default, one map per original frame with
the views combined (the overlay's map):

==========================  ===============================================
key                         array
==========================  ===============================================
``original_frame_inds``     int64 ``[N]``: the original frames some view saw
``original_maps``           float16 ``[N, H, W]``: the drawn map, views
                            combined (mean over the views covering each
                            pixel); in [0, 1], or in [-1, 1] for signed maps
                            (``raw / P99(|raw|)`` per view, clipped; see the record's
                            ``colour_scale``); ``H, W``: the overlay's size
``original_valid``          bool ``[N, H, W]``: where some view looked
``targets``, ``scores``     ``[1]``, ``[1, K]``
==========================  ===============================================

With ``per_view_maps=True`` it also holds each view's maps at the model's
input resolution: ``maps`` (float16, min-max per view, as
``Explanation.maps``), ``raw_maps`` (float32, the method's units) ``[1, V,
T, H, W]`` and ``layer_maps/<name>`` (float32). Files are compressed
(``np.savez_compressed``).
"""
import math
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np

from ..explainers import Explanation
from ..fileio import check_writable, read_label_map, staged_dir  # noqa: F401
from ..outputs import (OUTPUT_NAMES, VIDEO_DEFAULT, VIDEO_LAYOUT, VISUAL_OUTPUTS,
                       FrameTrack,
                       OutputWriter, RankOutputs, class_label,
                       explanation_record, headline, map_mass, top5_line)
from ..outputs.track import (SIGNED_COLORS, combine_over_frames, display_maps,
                             frame_series)
from .frame_mapping import maps_to_original, view_frame_indices
from .video_input import VideoSample, read_frames

#: Kept for one release: the names are those of :mod:`mmxai.outputs`.
OUTPUT_KINDS = OUTPUT_NAMES
DEFAULT_OUTPUTS = VIDEO_DEFAULT

__all__ = ['write_video_outputs', 'video_track', 'video_fps', 'OUTPUT_KINDS',
           'DEFAULT_OUTPUTS', 'check_writable', 'read_label_map',
           'class_label', 'explanation_record']


def video_fps(sample: VideoSample) -> float:
    """The source video's frame rate: ``sample.fps``, else read from the
    file with OpenCV (0.0 if unknown)."""
    if sample.fps and math.isfinite(sample.fps) and sample.fps > 0:
        return float(sample.fps)
    try:
        import cv2
        cap = cv2.VideoCapture(sample.filename)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
    except Exception:  # noqa: BLE001 - informative only
        return 0.0
    return fps if math.isfinite(fps) and fps > 0 else 0.0


def overlay_fps(source_fps: float, indices: np.ndarray) -> float:
    """Frame rate of the overlay of original frames ``indices``: the
    source's, divided by the usual step between them, so the overlay lasts
    as long as the part of the video it shows (8.0 if unknown)."""
    step = int(np.median(np.diff(indices))) if len(indices) > 1 else 1
    return source_fps / max(step, 1) if source_fps else 8.0


def video_track(exp: Explanation, sample: VideoSample,
                class_names: Optional[Sequence[str]] = None,
                max_side: int = 480) -> FrameTrack:
    """Sample 0 of ``exp`` on the original frames it was computed from
    (every view mapped back and merged), at most ``max_side`` px.

    Signed maps are drawn on a diverging scale (see
    :mod:`mmxai.outputs.track`). The plot is one curve (two for signed
    maps) over the original frames: each view's map mass per frame,
    combined by :func:`~mmxai.outputs.track.combine_over_frames` (mean
    over the views covering each frame), as a share of the total."""
    maps, signed = display_maps(exp)  # [V, T, H, W]
    h0, w0 = sample.original_shape
    scale = min(1.0, max_side / max(h0, w0)) if max_side else 1.0
    out_shape = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    indices, orig_maps, valid = maps_to_original(
        maps, sample.frame_inds, sample.crops, sample.original_shape,
        out_shape)
    frames = read_frames(sample.filename, indices, max_side=max(out_shape))
    if frames.shape[1:3] != orig_maps.shape[1:3]:
        import cv2
        frames = np.stack([cv2.resize(f, out_shape[::-1]) for f in frames])
    head, top_line = headline(exp, class_names), top5_line(exp, class_names)
    view_inds = view_frame_indices(maps.shape[0], maps.shape[1],
                                   sample.frame_inds)
    curves = {k: combine_over_frames(v, view_inds, indices)[1]
              for k, v in frame_series(maps, signed).items()}
    total = sum(c.sum() for c in curves.values())
    curves = {k: c / total if total > 0 else np.zeros_like(c)
              for k, c in curves.items()}
    if signed:
        importance = {'positive evidence': curves['positive'],
                      'negative evidence': -curves['negative']}
        colors = {'positive evidence': SIGNED_COLORS['positive'],
                  'negative evidence': SIGNED_COLORS['negative']}
    else:
        importance = {'map mass per frame': curves['mass']}
        colors = None
    return FrameTrack(
        stem='overlay', frames=frames, maps=orig_maps, valid=valid,
        lines=[[head, top_line, f'frame {int(i)}'] for i in indices],
        frame_indices=indices, title=f'{head} | {top_line}', plot_title=head,
        importance=importance, importance_x={k: indices for k in importance},
        fps=overlay_fps(video_fps(sample), indices), signed=signed,
        plot_colors=colors)


def write_video_outputs(out_dir: str, exp: Explanation, sample: VideoSample,
                        class_names: Optional[Sequence[str]] = None,
                        outputs: Sequence[str] = DEFAULT_OUTPUTS,
                        max_side: int = 480, alpha: float = 0.5,
                        cmap: str = 'jet', extra_record: Optional[dict] = None,
                        view_frames: Optional[np.ndarray] = None,
                        per_view_maps: bool = False,
                        signed_cmap: str = 'RdBu_r') -> Dict[str, str]:
    """Write the files of sample 0 of ``exp`` computed on ``sample``.

    ``view_frames``: uint8 ``[T, H, W, 3]`` of view 0 as the model saw it,
    for the method's extras (e.g. CFP's pyramid). ``per_view_maps``: also
    store each view's maps in ``maps.npz`` (see the module docstring).
    ``cmap`` / ``signed_cmap``: colour maps of non-negative / signed maps.
    Returns ``{name: path}`` (extras by file stem, e.g. ``cfp_pyramid``).
    """
    if not sample.fps:  # the pipeline's packing can drop it
        sample.fps = video_fps(sample)
    writer = OutputWriter(outputs, VIDEO_LAYOUT, alpha=alpha, cmap=cmap,
                          gif_max_size=320, json_indent=2,
                          signed_cmap=signed_cmap)
    track = video_track(exp, sample, class_names, max_side) \
        if writer.wants(*VISUAL_OUTPUTS, 'npz') else None
    arrays = {}
    if writer.wants('npz'):
        arrays = {'targets': exp.targets[:1].detach().cpu().numpy(),
                  'scores': exp.scores[:1].detach().float().cpu().numpy()}
        if per_view_maps:
            arrays.update(exp[0].to_numpy())
            arrays['maps'] = arrays['maps'].astype(np.float16)
        arrays.update(original_frame_inds=track.frame_indices,
                      original_maps=track.maps.astype(np.float16),
                      original_valid=track.valid)

    def record(files):
        rec = explanation_record(exp, sample, class_names, extra_record)
        rec['overlay_fps'] = track.fps if track is not None else None
        rec['colour_scale'] = writer.colour_scale(exp)
        rec['npz_maps'] = 'per view and per original frame' \
            if per_view_maps else 'per original frame (views combined)'
        rec['files'] = sorted(osp.basename(p) for p in files.all()) + [
            VIDEO_LAYOUT.json]
        return rec

    files = writer.write_sample(
        out_dir, 0, [RankOutputs(arrays, [track] if track else [])],
        record=record, explanation=exp, extras_frames=view_frames,
        class_names=class_names)
    paths = {name: osp.join(out_dir, rels[0])
             for name, rels in files.ranks[0].items()}
    for rel in files.extras:
        paths[osp.splitext(osp.basename(rel))[0]] = osp.join(out_dir, rel)
    if files.record:
        paths['json'] = osp.join(out_dir, files.record)
    return paths
