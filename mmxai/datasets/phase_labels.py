"""Per-frame labels of long videos: Cholec80's phase and tool files, CSVs.

The one place that turns annotation rows into frame labels: the long-video
mode (``--gt``) and the phase datasets use it. Rows are read by
:func:`mmxai.preflight.read_ground_truth` (standard library only, so the CLI
checks a file before the heavy imports).

Cholec80's layout (checked against the public loaders, e.g. TeCNO's and
CAMMA's SelfSupSurg, which read the same files):

* ``videoNN-phase.txt``: header ``Frame<TAB>Phase``, then one line per frame
  of the 25 fps video, ``<frame><TAB><phase name>``, the 7 names of
  :data:`CHOLEC80_PHASES`;
* ``videoNN-tool.txt``: header ``Frame<TAB>Grasper<TAB>Bipolar<TAB>Hook<TAB>
  Scissors<TAB>Clipper<TAB>Irrigator<TAB>SpecimenBag``, then one line per
  second (frames 0, 25, 50, ...), 7 binary columns.
"""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..preflight import CHOLEC80_FPS, read_ground_truth

#: The 7 phases of Cholec80, as written in its ``-phase.txt`` files, in
#: their index order (the order the community's evaluation script uses).
CHOLEC80_PHASES = ('Preparation', 'CalotTriangleDissection',
                   'ClippingCutting', 'GallbladderDissection',
                   'GallbladderPackaging', 'CleaningCoagulation',
                   'GallbladderRetraction')
#: The 7 tools of Cholec80's ``-tool.txt`` header, in column order.
CHOLEC80_TOOLS = ('Grasper', 'Bipolar', 'Hook', 'Scissors', 'Clipper',
                  'Irrigator', 'SpecimenBag')

__all__ = ['CHOLEC80_FPS', 'CHOLEC80_PHASES', 'CHOLEC80_TOOLS',
           'frame_ground_truth', 'read_ground_truth', 'read_tool_file',
           'write_phase_file', 'write_tool_file']


def frame_ground_truth(gt: dict, num_frames: int, fps: float,
                       class_names: Optional[Sequence[str]],
                       num_classes: int, tolerance_s: float = 1.0,
                       fix: Optional[str] = None) -> np.ndarray:
    """The class of every frame (``[num_frames]``, -1 before the first
    label) from :func:`~mmxai.preflight.read_ground_truth`'s rows.

    Args:
        fix: the end of the unknown-label message (what the user should do);
            default: the CLI's (``--label-map``).

    Raises:
        InputError: the file covers another length than the video (more
            than ``tolerance_s`` apart), or names a label the model lacks.
    """
    fps = fps or 25.0
    path = gt['path']
    pos = np.asarray(gt['positions'], np.float64)
    if gt['unit'] == 's':
        secs = pos
    else:
        secs = pos / (gt['fps'] or fps)
    duration = num_frames / fps
    step = 1.0 / (gt['fps'] or fps)
    last = secs[-1] + (step if gt['dense'] else 0.0)
    if last > duration + tolerance_s or (
            gt['dense'] and abs(last - duration) > tolerance_s):
        rate = f'{gt["fps"]:g} fps' if gt['fps'] else f'{fps:g} fps'
        raise InputError(
            f'ground truth {path} covers {last:.1f} s ({len(pos)} rows at '
            f'{rate}) but the video lasts {duration:.1f} s ({num_frames} '
            'frames); give the annotation file of this video')
    labels = gt['labels']
    index = _label_index(labels, class_names, num_classes, path, fix)
    starts = np.round(secs * fps).astype(np.int64)
    out = np.full(num_frames, -1, np.int64)
    bounds = list(starts[1:]) + [num_frames]
    for s, e, c in zip(starts, bounds, index):
        out[max(0, s):max(0, min(e, num_frames))] = c
    return out


def _label_index(labels, class_names, num_classes, path,
                 fix: Optional[str] = None) -> List[int]:
    names = list(class_names or [])

    def norm(s):
        return ''.join(ch for ch in str(s).lower() if ch.isalnum())
    exact = {n: i for i, n in enumerate(names)}
    loose = {norm(n): i for i, n in enumerate(names)}
    out, cache = [], {}
    for lab in labels:
        if lab in cache:
            out.append(cache[lab])
            continue
        if lab in exact:
            c = exact[lab]
        elif norm(lab) in loose:
            c = loose[norm(lab)]
        elif lab.lstrip('-').isdigit() and 0 <= int(lab) < num_classes:
            c = int(lab)
        else:
            shown = ', '.join(names[:8]) + (' ...' if len(names) > 8
                                            else '')
            raise InputError(
                f'ground truth {path}: label {lab!r} is not a class of the '
                f'model ({shown or f"classes 0..{num_classes - 1}"}); '
                + (fix or 'give --label-map with the class names, or class '
                   'numbers'))
        cache[lab] = c
        out.append(c)
    return out


def read_tool_file(path: str, num_frames: int, fps: float = CHOLEC80_FPS,
                   tolerance_s: float = 1.0) -> np.ndarray:
    """Cholec80 tool presence as one row per frame: ``[num_frames, 7]``
    uint8 (a row holds until the next annotated frame).

    Raises:
        InputError: missing file, a header that is not Cholec80's, a row
            with another number of columns or non-binary values, frames out
            of order, or rows beyond the video (by more than
            ``tolerance_s``) or ending more than ``tolerance_s`` + 1 s
            before it.
    """
    if not osp.isfile(path):
        raise InputError(f'tool annotation file not found: {path} (Cholec80 '
                         'layout: videoNN-tool.txt next to videoNN-phase.txt;'
                         ' set tool=None in data_prefix to read no tools)')
    with open(path, encoding='utf-8-sig') as f:
        lines = [ln.split() for ln in f.read().splitlines() if ln.strip()]
    want = ['frame'] + [t.lower() for t in CHOLEC80_TOOLS]
    if not lines or [c.lower() for c in lines[0]] != want:
        got = ' '.join(lines[0]) if lines else 'nothing'
        raise InputError(f'tool annotation file {path}: header is {got!r}, '
                         'expected Cholec80\'s "Frame Grasper Bipolar Hook '
                         'Scissors Clipper Irrigator SpecimenBag" (tabs)')
    frames, rows = [], []
    for n, cols in enumerate(lines[1:], start=2):
        if len(cols) != 8 or not all(c in ('0', '1') for c in cols[1:]) \
                or not cols[0].isdigit():
            raise InputError(f'tool annotation file {path}: line {n} is '
                             f'{" ".join(cols)!r}; expected a frame number '
                             'and 7 values 0/1')
        frames.append(int(cols[0]))
        rows.append([int(c) for c in cols[1:]])
    if not frames:
        raise InputError(f'tool annotation file {path} has a header but no '
                         'rows')
    if any(b <= a for a, b in zip(frames, frames[1:])):
        raise InputError(f'tool annotation file {path}: frames are not in '
                         'increasing order')
    duration = num_frames / fps
    first, last = frames[0] / CHOLEC80_FPS, frames[-1] / CHOLEC80_FPS
    if last > duration + tolerance_s or last < duration - tolerance_s - 1.0 \
            or first > tolerance_s:
        raise InputError(
            f'tool annotation file {path} covers {first:.1f}-{last:.1f} s '
            f'but the video lasts {duration:.1f} s ({num_frames} frames); '
            'give the tool file of this video')
    out = np.zeros((num_frames, len(CHOLEC80_TOOLS)), np.uint8)
    starts = [int(round(f / CHOLEC80_FPS * fps)) for f in frames]
    bounds = starts[1:] + [num_frames]
    for s, e, r in zip(starts, bounds, rows):
        out[s:max(s, min(e, num_frames))] = r
    return out


def write_phase_file(path: str, phases: Sequence[int],
                     names: Sequence[str] = CHOLEC80_PHASES) -> str:
    """Write per-frame phase indices as a Cholec80 ``-phase.txt``."""
    with open(path, 'w') as f:
        f.write('Frame\tPhase\n')
        for i, p in enumerate(phases):
            f.write(f'{i}\t{names[int(p)]}\n')
    return path


def write_tool_file(path: str, tools: np.ndarray, fps: float = CHOLEC80_FPS
                    ) -> str:
    """Write per-frame tool presence ``[N, 7]`` as a Cholec80
    ``-tool.txt`` (one row per second of the video, frames in 25 fps
    numbering)."""
    step = max(1, int(round(fps)))
    with open(path, 'w') as f:
        f.write('Frame\t' + '\t'.join(CHOLEC80_TOOLS) + '\n')
        for i in range(0, len(tools), step):
            frame = int(round(i / fps * CHOLEC80_FPS))
            f.write(f'{frame}\t' + '\t'.join(str(int(v)) for v in tools[i])
                    + '\n')
    return path
