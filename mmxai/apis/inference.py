"""``explain_video``: one video, one method, files on disk."""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from torch import nn

from ..adapters import unwrap_model
from ..explainers import BaseExplainer, Explanation, build_explainer
from .outputs import DEFAULT_OUTPUTS, check_writable, write_video_outputs
from .video_input import VideoSample, load_video_sample


@dataclass
class VideoExplanation:
    """What ``explain_video`` returns: the maps, the sample, written files."""
    explanation: Explanation
    sample: VideoSample
    files: Dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def class_names_of(model: nn.Module) -> Optional[List[str]]:
    """Class names from ``model.dataset_meta['classes']`` if present."""
    meta = getattr(unwrap_model(model), 'dataset_meta', None) or {}
    classes = meta.get('classes')
    return list(classes) if classes else None


def explain_video(model: nn.Module, video: str,
                  method: Union[str, dict, BaseExplainer] = 'gradcam',
                  target: Union[str, int] = 'pred',
                  out_dir: Optional[str] = None,
                  class_names: Optional[Sequence[str]] = None,
                  outputs: Sequence[str] = DEFAULT_OUTPUTS,
                  label: int = -1, **options) -> VideoExplanation:
    """Explain ``model``'s decision on a video file.

    Runs the model config's own test pipeline on ``video`` (so ``model``
    must come from ``init_recognizer``, which sets ``model.cfg``), explains
    with ``method`` and, if ``out_dir`` is given, writes the overlay video,
    montage, temporal-importance plot, ``maps.npz`` and
    ``explanation.json`` there (atomically).

    Args:
        model: recognizer from ``mmxai.apis.init_recognizer`` (or
            ``mmaction.apis.init_recognizer``).
        video: path of the video file.
        method: method name (``'gradcam'``, ``'gradcam++'``,
            ``'saliency_tubes'``, ...), config dict, or a built explainer.
        target: ``'pred'``, ``'gt'`` (uses ``label``) or a class index.
        out_dir: where to write files (nothing is written if None).
        class_names: class names for labels (default: the model's
            ``dataset_meta``).
        outputs: which files (see ``mmxai.apis.outputs.OUTPUT_KINDS``).
        label: ground-truth label of the video, if known.
        **options: the method's settings (e.g. ``target_layers``).
    """
    from ..errors import ConfigError
    start = time.perf_counter()
    cfg = getattr(unwrap_model(model), 'cfg', None)
    if cfg is None:
        raise ConfigError('the model has no .cfg: build it with '
                          'mmxai.apis.init_recognizer(config, checkpoint)')
    if out_dir is not None:
        check_writable(out_dir)
    explainer = method if isinstance(method, BaseExplainer) else \
        build_explainer(method, model, **options)
    sample = load_video_sample(video, cfg, label=label)
    exp = explainer.explain(sample.data, target=target)
    exp.settings['seconds_total'] = round(time.perf_counter() - start, 4)
    names = list(class_names) if class_names else class_names_of(model)
    files = {}
    if out_dir is not None:
        files = write_video_outputs(out_dir, exp, sample, names, outputs,
                                    explainer=explainer)
    return VideoExplanation(exp, sample, files,
                            round(time.perf_counter() - start, 4))
