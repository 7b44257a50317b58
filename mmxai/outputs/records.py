"""The JSON records of explained samples (the ``json`` output)."""
from typing import Optional, Sequence

from ..version import __version__

__all__ = ['class_label', 'headline', 'top5_line', 'explanation_record']


def class_label(c: int, class_names: Optional[Sequence[str]]) -> str:
    """``class_names[c]`` when known, else ``str(c)``."""
    return str(class_names[c]) if class_names and 0 <= c < len(
        class_names) else str(c)


def headline(exp, class_names: Optional[Sequence[str]] = None) -> str:
    """``'gradcam: jump (p=0.93)'`` for sample 0 of ``exp``; for a callable
    target ``'gradcam: callable:contrast (value=1.23)'``."""
    if getattr(exp, 'explains_function', False):
        return (f'{exp.method}: {exp.target_spec} '
                f'(value={float(exp.scores[0, 0]):.4g})')
    target = int(exp.targets[0])
    return (f'{exp.method}: {class_label(target, class_names)} '
            f'(p={float(exp.probs[0][target]):.2f})')


def top5_line(exp, class_names: Optional[Sequence[str]] = None) -> str:
    """``'top-5: jump 0.93, run 0.04, ...'`` for sample 0 of ``exp`` (a
    callable target has one output, its value: no classes to rank)."""
    if getattr(exp, 'explains_function', False):
        return f'explained: {exp.target_spec} = {float(exp.scores[0, 0]):.4g}'
    return 'top-5: ' + ', '.join(f'{class_label(c, class_names)} {p:.2f}'
                                 for c, p in exp.topk(5)[0])


def explanation_record(exp, video=None,
                       class_names: Optional[Sequence[str]] = None,
                       extra: Optional[dict] = None) -> dict:
    """The record of sample 0 of ``exp``: method, settings, target, top-5,
    run time, version, map ranges; with ``video`` (a ``VideoSample``) also
    its file, frame indices, original shape and fps."""
    rec = exp.summary(list(class_names) if class_names else None)
    rec['run_time_s'] = exp.settings.get('seconds')
    rec['mmxai_version'] = __version__
    rec['raw_map_range'] = [float(exp.raw_maps[0].min()),
                            float(exp.raw_maps[0].max())]
    rec['layer_maps'] = {k: list(v.shape) for k, v in exp.layer_maps.items()}
    if video is not None:
        rec['video'] = video.filename
        rec['frame_inds'] = [int(i) for i in video.frame_inds]
        rec['original_shape'] = list(video.original_shape)
        rec['fps'] = video.fps
    if extra:
        rec.update(extra)
    return rec
