"""One video's files: the explanation mapped back onto the original frames,
written by the one :class:`~mmxai.outputs.OutputWriter` (layout
:data:`~mmxai.outputs.VIDEO_LAYOUT`: ``overlay.mp4``, ``overlay.gif``,
``montage.png``, ``temporal_importance.png``, ``maps.npz``,
``explanation.json``, plus the method's registered extras)."""
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np

from ..explainers import Explanation
from ..fileio import check_writable, read_label_map, staged_dir  # noqa: F401
from ..outputs import (OUTPUT_NAMES, VIDEO_DEFAULT, VIDEO_LAYOUT, VISUAL_OUTPUTS,
                       FrameTrack,
                       OutputWriter, RankOutputs, class_label,
                       explanation_record, headline, map_mass, top5_line)
from .frame_mapping import maps_to_original
from .video_input import VideoSample, read_frames

#: Kept for one release: the names are those of :mod:`mmxai.outputs`.
OUTPUT_KINDS = OUTPUT_NAMES
DEFAULT_OUTPUTS = VIDEO_DEFAULT

__all__ = ['write_video_outputs', 'video_track', 'OUTPUT_KINDS',
           'DEFAULT_OUTPUTS', 'check_writable', 'read_label_map',
           'class_label', 'explanation_record']


def video_track(exp: Explanation, sample: VideoSample,
                class_names: Optional[Sequence[str]] = None,
                max_side: int = 480) -> FrameTrack:
    """Sample 0 of ``exp`` on the original frames it was computed from
    (every view mapped back and merged), at most ``max_side`` px."""
    maps = exp.maps[0].detach().float().cpu().numpy()  # [V, T, H, W]
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
    step = int(np.median(np.diff(indices))) if len(indices) > 1 else 1
    fps = (sample.fps / max(step, 1)) if sample.fps else 8.0
    series = 'map mass per frame'
    return FrameTrack(
        stem='overlay', frames=frames, maps=orig_maps, valid=valid,
        lines=[[head, top_line, f'frame {int(i)}'] for i in indices],
        frame_indices=indices, title=f'{head} | {top_line}', plot_title=head,
        importance={series: map_mass(orig_maps, valid)},
        importance_x={series: indices}, fps=fps)


def write_video_outputs(out_dir: str, exp: Explanation, sample: VideoSample,
                        class_names: Optional[Sequence[str]] = None,
                        outputs: Sequence[str] = DEFAULT_OUTPUTS,
                        max_side: int = 480, alpha: float = 0.5,
                        cmap: str = 'jet', extra_record: Optional[dict] = None,
                        view_frames: Optional[np.ndarray] = None
                        ) -> Dict[str, str]:
    """Write the files of sample 0 of ``exp`` computed on ``sample``.

    ``view_frames``: uint8 ``[T, H, W, 3]`` of view 0 as the model saw it,
    for the method's extras (e.g. CFP's pyramid). Returns ``{name: path}``
    (extras by file stem, e.g. ``cfp_pyramid``).
    """
    writer = OutputWriter(outputs, VIDEO_LAYOUT, alpha=alpha, cmap=cmap,
                          gif_max_size=320, json_indent=2)
    track = video_track(exp, sample, class_names, max_side) \
        if writer.wants(*VISUAL_OUTPUTS, 'npz') else None
    arrays = {}
    if writer.wants('npz'):
        arrays = exp[0].to_numpy()
        arrays.update(original_frame_inds=track.frame_indices,
                      original_maps=track.maps.astype(np.float16),
                      original_valid=track.valid)

    def record(files):
        rec = explanation_record(exp, sample, class_names, extra_record)
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
