"""A phase video explained both ways in one run: spatial maps window by
window (:func:`explain_long_video`) and which moments drive the phase at
each window's time (:func:`explain_phase_sequence`, temporal attribution
over the cached frame features), combined in the long-video outputs.

``OUT/``: the windows mode's files (``timeline.png`` with one more panel
per sequence method, ``overlay.mp4`` with a strip and a panel line,
``index.html`` with a row and the top moments at the cursor), and
``OUT/sequence/`` the sequence mode's (``importance.npz/csv/png``,
``sequence.json``, ``features/``). The sequence runs first (the overlay is
drawn during the windows' sweep and needs it); both resume: the features
are cached, the windows' records kept.
"""
import os.path as osp
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from torch import nn

from ..explainers.sequence_attribution import check_phase_head
from ..outputs.sequence_track import SequenceTrack
from ..outputs.timeline import Timeline
from ..preflight import check_video_file
from .long_video import (VideoStream, explain_long_video, label_position,
                         plan_windows)
from .phase_sequence import (PhaseSequenceExplanation, SEQUENCE_METHODS,
                             explain_phase_sequence)
from .video_input import test_pipeline_cfg

__all__ = ['explain_phase_video', 'window_times']

#: The sequence mode's folder inside the run's ``out_dir``.
SEQUENCE_FOLDER = 'sequence'


def window_times(model: nn.Module, cfg: Any, video: str, stride: Any = None,
                 window_span: Any = None, start: Any = None, end: Any = None,
                 views: str = 'one', label_at: Optional[str] = None) -> list:
    """The time (s) each window of the long-video plan is about (its label
    frame, ``label_frame / fps``), in window order."""
    stream = VideoStream(video)
    plan = plan_windows(test_pipeline_cfg(cfg), stream.num_frames,
                        stream.fps, stride, window_span, start, end, views,
                        label_at or label_position(model, cfg))
    fps = plan.fps or 25.0
    return [plan.record(i).at_frame / fps for i in range(len(plan))]


def explain_phase_video(
        model: Union[nn.Module, str], video: str,
        method: Any = 'saliency', out_dir: Optional[str] = None,
        times: Union[None, str, Sequence[Any]] = None,
        sequence_methods: Sequence[str] = SEQUENCE_METHODS,
        shown: Optional[str] = None,
        sequence_options: Optional[Dict[str, Any]] = None,
        gt: Optional[str] = None, target: Union[str, int] = 'pred',
        class_names: Any = None, checkpoint: Optional[str] = None,
        device: str = 'cpu', trust_checkpoint: bool = False,
        cfg_options: Optional[dict] = None,
        allow_partial_checkpoint: bool = False, progress: bool = True,
        **long_video: Any
) -> Tuple[Timeline, PhaseSequenceExplanation]:
    """Explain a phase video window by window and over its whole sequence.

    Args:
        model: a recognizer whose head is ``CausalMSTCNHead`` (or a config
            with ``checkpoint``, ...).
        method: the windows' spatial method (as :func:`explain_long_video`).
        out_dir: the run's folder (the sequence's in ``out_dir/sequence``).
        times: the sequence's explained times; None (default): every
            window's time (its label frame), so each window has its row.
        sequence_methods: of ``occlusion``, ``ig``, ``shapley``.
        shown: the sequence method the overlay and the viewer draw (default:
            the first of ``sequence_methods``); ``timeline.png`` has all.
        sequence_options: more keywords of :func:`explain_phase_sequence`
            (``context``, ``baseline``, ``score``, ``ig_steps``, ``cams``,
            ``batch_size``, ...).
        long_video: more keywords of :func:`explain_long_video` (``stride``,
            ``window_span``, ``start``, ``end``, ``batch_size``, ...).
    Returns:
        ``(timeline, sequence explanation)``.
    Raises:
        UnsupportedModelError: the head is not ``CausalMSTCNHead``.
        InputError, TargetError, ConfigError, OutputError: one line.
    """
    check_video_file(video)
    from .model import model_and_config
    model, cfg = model_and_config(
        model, checkpoint, device=device, trust_checkpoint=trust_checkpoint,
        cfg_options=cfg_options,
        allow_partial_checkpoint=allow_partial_checkpoint)
    check_phase_head(model)
    if times is None:
        keys = ('stride', 'window_span', 'start', 'end', 'views', 'label_at')
        times = window_times(model, cfg, video, **{
            k: long_video[k] for k in keys if k in long_video})
    seq_dir = osp.join(out_dir, SEQUENCE_FOLDER) if out_dir else None
    opts = dict(sequence_options or {})
    res = explain_phase_sequence(
        model, video, times=times, methods=sequence_methods, target=target,
        out_dir=seq_dir, gt=gt, class_names=class_names, progress=progress,
        **opts)
    track = SequenceTrack.from_explanation(res, shown=shown, folder=seq_dir)
    tl = explain_long_video(
        model, video, method=method, target=target, out_dir=out_dir, gt=gt,
        class_names=class_names, progress=progress, sequence=track,
        **long_video)
    if seq_dir is not None:
        tl.files['sequence'] = seq_dir
    return tl, res
