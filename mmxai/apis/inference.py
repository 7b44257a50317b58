"""``explain_video``: one video, one method, files on disk.

The one place that checks a video run's inputs, turns a method name into
an explainer and writes the files; ``tools/explain.py`` only parses, calls
this and prints.
"""
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import mmengine
from torch import nn

from ..adapters import unwrap_model, video_to_frames
from ..explainers import BaseExplainer, Explanation, build_explainer
from ..fileio import check_writable
from ..preflight import check_video_file
from ..outputs import VIDEO_DEFAULT, extras_writer, resolve_outputs
from .class_names import class_names_of, config_class_names, given_class_names, \
    matched_class_names
from .outputs import write_video_outputs
from .video_input import VideoSample, load_video_sample

__all__ = ['VideoExplanation', 'explain_video', 'class_names_of',
           'config_class_names', 'default_out_dir']


@dataclass
class VideoExplanation:
    """What ``explain_video`` returns: the maps, the sample, written files
    (``{output name: path}``), the class names used and the explainer."""
    explanation: Explanation
    sample: VideoSample
    files: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    class_names: Optional[List[str]] = None
    explainer: Optional[BaseExplainer] = None

    def target_label(self, i: int = 0) -> str:
        """Name (or index) of the explained class of sample ``i`` (a
        callable target: its description, ``'callable:<name>'``)."""
        if self.explanation.explains_function:
            return self.explanation.target_spec
        t = int(self.explanation.targets[i])
        names = self.class_names or []
        return names[t] if 0 <= t < len(names) else str(t)


def default_out_dir(source: str, method: Union[str, dict, BaseExplainer]
                    ) -> str:
    """``work_dirs/explain/<stem>_<method>`` (``+`` -> ``p``), ``source``
    being the video (or, for dataset runs, the config)."""
    name = method if isinstance(method, str) else (
        method.get('type', 'explain') if isinstance(method, dict)
        else method.name)
    return osp.join('work_dirs', 'explain',
                    f'{osp.splitext(osp.basename(source))[0]}_'
                    f'{str(name).replace("+", "p")}')


def explain_video(model: Union[nn.Module, str, mmengine.Config], video: str,
                  method: Union[str, dict, BaseExplainer] = 'gradcam',
                  target: Union[str, int] = 'pred',
                  out_dir: Optional[str] = None,
                  class_names: Union[None, str, Sequence[str]] = None,
                  outputs: Sequence[str] = VIDEO_DEFAULT,
                  label: int = -1, checkpoint: Optional[str] = None,
                  device: str = 'cpu', trust_checkpoint: bool = False,
                  cfg_options: Optional[dict] = None,
                  allow_partial_checkpoint: bool = False,
                  per_view_maps: bool = False,
                  **options) -> VideoExplanation:
    """Explain a recognizer's decision on a video file.

    Checks the inputs first (video file, output folder, label map, output
    names), then builds the model if given a config, runs the config's own
    test pipeline on ``video``, explains with ``method`` and, if ``out_dir``
    is given, writes the outputs there (see :mod:`mmxai.outputs`).

    Args:
        model: a recognizer from ``mmxai.apis.init_recognizer`` (it sets
            ``model.cfg``), or a config (path, ``mmaction::`` name or
            ``Config``) to build one with ``checkpoint``/``device``.
        video: path of the video file.
        method: method name (``'gradcam'``, ``'gradcam++'``,
            ``'saliency_tubes'``, ...), config dict, or a built explainer.
        target: ``'pred'``, ``'gt'`` (uses ``label``) or a class index.
        out_dir: where to write files (nothing is written if None).
        class_names: names, or a label-map file (one per line); default:
            the model's ``dataset_meta``.
        outputs: output names (``mmxai.outputs.OUTPUT_NAMES``).
        label: ground-truth label of the video, if known.
        checkpoint, device, trust_checkpoint, cfg_options,
            allow_partial_checkpoint: model building (when ``model`` is a
            config; see :func:`init_recognizer`).
        per_view_maps: ``maps.npz`` also holds each view's maps (``maps``,
            ``raw_maps`` ``[1, V, T, H, W]``, layer maps); by default only
            one map per original frame, views combined (see
            :mod:`mmxai.apis.outputs`).
        **options: the method's settings (e.g. ``target_layers``).
    Raises:
        InputError, OutputError, ConfigError: one-line, fixable problems.
    """
    start = time.perf_counter()
    check_video_file(video)
    outputs = resolve_outputs(outputs, 'outputs')
    if out_dir is not None:
        check_writable(out_dir)
    names = given_class_names(class_names)
    from .model import model_and_config
    model, cfg = model_and_config(
        model, checkpoint, device=device, trust_checkpoint=trust_checkpoint,
        cfg_options=cfg_options,
        allow_partial_checkpoint=allow_partial_checkpoint)
    explainer = method if isinstance(method, BaseExplainer) else \
        build_explainer(method, model, **options)
    names = matched_class_names(names, model, cfg,
                                explainer.adapter.num_classes)
    sample = load_video_sample(video, cfg, label=label)
    exp = explainer.explain(sample.data, target=target)
    exp.settings['seconds_total'] = round(time.perf_counter() - start, 4)
    exp.settings['sampling'] = sample.sampling  # frames repeated, if any
    warning = getattr(unwrap_model(model), 'mmxai_checkpoint_warning', None)
    if warning:
        exp.settings['checkpoint_warning'] = warning
    files = {}
    if out_dir is not None:
        frames = _view_frames(explainer, sample) \
            if extras_writer(exp.method) else None  # only extras need them
        files = write_video_outputs(out_dir, exp, sample, names, outputs,
                                    view_frames=frames,
                                    per_view_maps=per_view_maps)
    return VideoExplanation(exp, sample, files,
                            round(time.perf_counter() - start, 4), names,
                            explainer)


def _view_frames(explainer: BaseExplainer, sample: VideoSample):
    """View 0 as the model saw it (before normalisation): uint8
    ``[T, H, W, 3]``."""
    raw = sample.data['inputs'][0].unsqueeze(0)
    return video_to_frames(explainer.adapter.to_video(raw))[0, 0]
