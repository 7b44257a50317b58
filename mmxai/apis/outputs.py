"""Write an explanation's files: overlay video, montage, plot, arrays, JSON.

Everything is written into a staging folder inside ``out_dir`` and moved in
only when all files are complete, so a failure or Ctrl-C leaves no
half-written output behind.
"""
import contextlib
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import OutputError
from ..explainers import Explanation
from ..version import __version__
from .frame_mapping import maps_to_original
from .video_input import VideoSample, read_frames

#: Output kinds ``write_video_outputs`` knows.
OUTPUT_KINDS = ('video', 'gif', 'montage', 'plot', 'npz', 'json')
DEFAULT_OUTPUTS = ('video', 'montage', 'plot', 'npz', 'json')


def check_writable(out_dir: str) -> None:
    """Fail early (before any work) if ``out_dir`` cannot be created/written.

    Raises:
        OutputError: a parent is a file, or no write permission.
    """
    path = osp.abspath(out_dir)
    probe = path
    while not osp.exists(probe):
        parent = osp.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not osp.isdir(probe):
        raise OutputError(f'cannot create output folder {out_dir}: '
                          f'{probe} is not a folder')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f'output folder {out_dir} is not writable '
                          f'(no permission on {probe})')


@contextlib.contextmanager
def staged_dir(out_dir: str) -> Iterator[str]:
    """A staging folder whose files are moved into ``out_dir`` on success
    and deleted on failure."""
    check_writable(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        stage = tempfile.mkdtemp(prefix='.mmxai-staging-', dir=out_dir)
    except OSError as e:
        raise OutputError(f'cannot write to {out_dir}: {e.strerror}') from e
    try:
        yield stage
        for name in sorted(os.listdir(stage)):
            os.replace(osp.join(stage, name), osp.join(out_dir, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def class_label(c: int, class_names: Optional[Sequence[str]]) -> str:
    return str(class_names[c]) if class_names and 0 <= c < len(
        class_names) else str(c)


def explanation_record(exp: Explanation, sample: Optional[VideoSample] = None,
                       class_names: Optional[Sequence[str]] = None,
                       extra: Optional[dict] = None) -> dict:
    """The JSON record of sample 0: method, settings, target, top-5, ..."""
    rec = exp.summary(list(class_names) if class_names else None)
    rec['run_time_s'] = exp.settings.get('seconds')
    rec['mmxai_version'] = __version__
    rec['raw_map_range'] = [float(exp.raw_maps[0].min()),
                            float(exp.raw_maps[0].max())]
    rec['layer_maps'] = {k: list(v.shape) for k, v in exp.layer_maps.items()}
    if sample is not None:
        rec['video'] = sample.filename
        rec['frame_inds'] = [int(i) for i in sample.frame_inds]
        rec['original_shape'] = list(sample.original_shape)
        rec['fps'] = sample.fps
    if extra:
        rec.update(extra)
    return rec


def write_video_outputs(out_dir: str, exp: Explanation, sample: VideoSample,
                        class_names: Optional[Sequence[str]] = None,
                        outputs: Sequence[str] = DEFAULT_OUTPUTS,
                        max_side: int = 480, alpha: float = 0.5,
                        cmap: str = 'jet', extra_record: Optional[dict] = None,
                        explainer=None) -> Dict[str, str]:
    """Write the files for sample 0 of ``exp`` computed on ``sample``.

    Returns ``{kind: path}``. Kinds: ``video`` (``overlay.mp4``), ``gif``
    (``overlay.gif``), ``montage`` (``montage.png``), ``plot``
    (``temporal_importance.png``), ``npz`` (``maps.npz``), ``json``
    (``explanation.json``); plus what the explainer's ``write_extras``
    writes (e.g. the Class Feature Pyramid graph).
    """
    from .. import visualization as vis
    unknown = [k for k in outputs if k not in OUTPUT_KINDS]
    if unknown:
        raise OutputError(f"unknown output kind '{unknown[0]}'; choose from "
                          f"{', '.join(OUTPUT_KINDS)}")
    maps = exp.maps[0].detach().cpu().numpy()  # [V, T, H, W]
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
    target = int(exp.targets[0])
    probs = exp.probs[0]
    top = exp.topk(5)[0]
    head = (f'{exp.method}: {class_label(target, class_names)} '
            f'(p={float(probs[target]):.2f})')
    top_line = 'top-5: ' + ', '.join(
        f'{class_label(c, class_names)} {p:.2f}' for c, p in top)
    files: Dict[str, str] = {}
    with staged_dir(out_dir) as stage:
        step = int(np.median(np.diff(indices))) if len(indices) > 1 else 1
        fps = (sample.fps / max(step, 1)) if sample.fps else 8.0
        if 'video' in outputs or 'gif' in outputs:
            over = vis.overlay_heatmap(frames, orig_maps, alpha=alpha,
                                       cmap=cmap, valid_mask=valid)
            lines = [[head, top_line, f'frame {int(i)}'] for i in indices]
            over = vis.draw_label_panel(over, lines)
            if 'video' in outputs:
                files['video'] = vis.write_video(
                    osp.join(stage, 'overlay.mp4'), over, fps=max(fps, 1.0))
            if 'gif' in outputs:
                files['gif'] = vis.write_gif(
                    osp.join(stage, 'overlay.gif'), over,
                    fps=min(max(fps, 1.0), 25), max_size=320)
        if 'montage' in outputs:
            files['montage'] = vis.save_montage(
                osp.join(stage, 'montage.png'), frames, orig_maps,
                valid_mask=valid, source_indices=indices, alpha=alpha,
                cmap=cmap, suptitle=f'{head} | {top_line}')
        if 'plot' in outputs:
            series = {'map mass per frame': _mass(orig_maps, valid)}
            series_idx = {'map mass per frame': indices}
            files['plot'] = vis.plot_temporal_importance(
                osp.join(stage, 'temporal_importance.png'), series,
                frame_indices=series_idx, title=head)
        if 'npz' in outputs:
            arrays = exp[0].to_numpy()
            arrays.update(original_frame_inds=indices,
                          original_maps=orig_maps.astype(np.float16),
                          original_valid=valid)
            path = osp.join(stage, 'maps.npz')
            np.savez_compressed(path, **arrays)
            files['npz'] = path
        if explainer is not None and hasattr(explainer, 'write_extras'):
            for path in explainer.write_extras(
                    exp, stage, frames=_view_frames(explainer, sample),
                    class_names=class_names) or []:
                files[osp.splitext(osp.basename(path))[0]] = path
        if 'json' in outputs:
            rec = explanation_record(exp, sample, class_names, extra_record)
            rec['files'] = sorted(osp.basename(p) for p in files.values()) + [
                'explanation.json']
            path = osp.join(stage, 'explanation.json')
            with open(path, 'w') as f:
                json.dump(rec, f, indent=2, default=_json_default)
            files['json'] = path
    return {k: osp.join(out_dir, osp.basename(p)) for k, p in files.items()}


def _view_frames(explainer, sample: VideoSample) -> np.ndarray:
    """The first view as the model saw it (before normalisation):
    uint8 ``[T, H, W, 3]``."""
    raw = sample.data['inputs'][0].unsqueeze(0)
    video = explainer.adapter.to_video(raw)  # [1, V, C, T, H, W]
    return video[0, 0].permute(1, 2, 3, 0).clamp(0, 255).byte().cpu().numpy()


def _mass(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    m = np.where(valid, np.clip(maps, 0, None), 0).reshape(len(maps), -1)
    total = m.sum()
    return m.sum(-1) / total if total > 0 else m.sum(-1)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_label_map(path: Optional[str]) -> Optional[List[str]]:
    """Class names from a label map file (one name per line)."""
    if not path:
        return None
    from ..errors import InputError
    if not osp.isfile(path):
        raise InputError(f'label map not found: {path}')
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]
