"""The files of a method comparison (:func:`mmxai.apis.compare_methods`),
written with :data:`~mmxai.outputs.COMPARE_LAYOUT`:

==============================  ==========================================
file                            what
==============================  ==========================================
``compare.json``                the numbers: per method means (and 95 %
                                intervals over several clips), per clip
                                values, agreement, n/a, failures,
                                recommendation, budgets
``compare.md``                  the table and the recommendation
``agreement.png``               method x method Spearman heat map
``index.html``                  the viewer: synced tile videos, sortable
                                table, recommendation (self-contained)
``clips/<i>/record.json``       the clip's record (its methods' numbers)
``clips/<i>/maps_<m>.npz``      method ``m``'s maps on the original frames
``clips/<i>/overlay.mp4``       every method side by side, the same frames
``clips/<i>/montage.png``       a row per method, the same key frames
``clips/<i>/<m>.mp4``           method ``m``'s tile (the viewer's videos)
==============================  ==========================================

A clip's record and maps go through :class:`OutputWriter` (staged, record
last); the pictures and the run-level files are each written atomically.
Videos are H.264 when ``imageio-ffmpeg`` is installed (browsers play it),
else ``mp4v``.
"""
import os.path as osp
from typing import Any, Dict, List, Sequence

import numpy as np

from ..fileio import atomic_path
from .layout import COMPARE_LAYOUT
from .track import FrameTrack, colour_scale
from .writer import OutputWriter, RankOutputs

__all__ = ['COMPARE_FILES', 'write_comparison', 'comparison_table',
           'TABLE_COLUMNS']

COMPARE_FILES = dict(json='compare.json', md='compare.md',
                     agreement='agreement.png', html='index.html')

#: (key, label, help) of the table columns.
TABLE_COLUMNS = [
    ('method', 'method', ''),
    ('faithfulness', 'ins - del', 'insertion - deletion AUC, higher is better'),
    ('deletion', 'deletion', 'AUC, lower is better'),
    ('insertion', 'insertion', 'AUC, higher is better'),
    ('average_drop', 'avg drop %', 'lower is better'),
    ('sanity_head', 'rho head', 'rank correlation after randomising the head'),
    ('sanity_last', 'rho head+stage', 'after the head and the last stage; '
     'passes below the threshold'),
    ('sanity', 'sanity', 'passes / fails'),
    ('beats_random', 'beats random', 'deletion and insertion better than a '
     'random map'),
    ('seconds', 'time s', 'explanation wall time per clip'),
    ('peak_mib', 'peak MiB', 'peak memory of the explanation'),
]


def _rows(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for name, m in summary['methods'].items():
        r = {k: m.get(k) for k, _, _ in TABLE_COLUMNS if k in m}
        r['method'] = name
        r['sanity'] = {True: 'passes', False: 'FAILS', None: '-'}[
            m.get('sanity_passed')]
        r['beats_random'] = {True: 'yes', False: 'no', None: '-'}[
            m.get('beats_random')]
        rows.append(r)
    rnd = summary.get('random')
    if rnd:
        rows.append(dict(method='(random map)', **rnd))
    return rows


def comparison_table(summary: Dict[str, Any]) -> str:
    """The Markdown table of ``summary`` (methods by insertion - deletion,
    the random map last)."""
    def cell(v):
        if v is None:
            return '-'
        if isinstance(v, float):
            return f'{v:.0f}' if abs(v) >= 100 else f'{v:.3f}'
        return str(v)
    rows = sorted(_rows(summary), key=lambda r: (
        r['method'] == '(random map)', -(r.get('faithfulness') or -9)))
    head = '| ' + ' | '.join(lbl for _, lbl, _ in TABLE_COLUMNS) + ' |'
    sep = '|' + '|'.join('---' if k == 'method' else '---:'
                         for k, _, _ in TABLE_COLUMNS) + '|'
    body = ['| ' + ' | '.join(cell(r.get(k)) for k, _, _ in TABLE_COLUMNS)
            + ' |' for r in rows]
    return '\n'.join([head, sep] + body)


def _markdown(summary: Dict[str, Any]) -> str:
    lines = ['# Method comparison', '',
             f'Videos: {", ".join(osp.basename(v) for v in summary["videos"])}'
             f'; budget `{summary["budget"]}`: '
             f'{summary["budget_description"]}.', '', '## Recommendation', '']
    lines += [f'- {x}' for x in summary['recommendation']]
    lines += ['', '## Metrics', '', comparison_table(summary), '']
    lines += [f'- **{k}**: {v}' for k, v in summary['metrics'].items()]
    if summary['not_applicable']:
        lines += ['', '## Not applicable to this model', '']
        lines += [f'- {x["method"]}: {x["reason"]}'
                  for x in summary['not_applicable']]
    if summary['failures']:
        lines += ['', '## Failures (the comparison went on)', '']
        lines += [f'- {x["method"]} on {osp.basename(x["video"])}: '
                  f'{x["error"]}' for x in summary['failures']]
    lines += ['', '![agreement](agreement.png)', '']
    for i in range(len(summary['videos'])):
        lines += [f'![clip {i}]({COMPARE_LAYOUT.path("montage", i)})', '']
    return '\n'.join(lines)


def _write_mp4(path: str, frames: np.ndarray, fps: float) -> str:
    from ..visualization.timeline import StreamVideoWriter
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)),
                        mode='edge')
    with atomic_path(path) as tmp:
        with StreamVideoWriter(tmp, max(fps, 1.0), frames.shape[1:3]) as vw:
            for f in frames:
                vw.write(f)
    return path


def write_comparison(out_dir: str, summary: Dict[str, Any],
                     tracks: Sequence[Dict[str, FrameTrack]],
                     explanations: Sequence[Dict[str, Any]] = (),
                     tile_size: int = 192) -> Dict[str, str]:
    """Write the comparison's files (see the module docstring) under
    ``out_dir``. ``tracks``: per clip, ``{method: FrameTrack}`` on the
    original frames (all on the same frames). Returns ``{name: path}``."""
    from ..visualization.compare import (compare_viewer_html, grid_frames,
                                         plot_agreement,
                                         save_comparison_montage, tile_frames)
    writer = OutputWriter(['json', 'npz'], COMPARE_LAYOUT, json_indent=1)
    files: Dict[str, str] = {}
    clips_view = []
    for ci, clip in enumerate(tracks):
        per = summary['per_clip'][ci]
        ranks = [RankOutputs(dict(original_frame_inds=t.frame_indices,
                                  original_maps=t.maps.astype(np.float16),
                                  original_valid=t.valid), [], f'_{m}')
                 for m, t in clip.items()]

        def record(sf, per=per, clip=clip):
            rec = dict(per)
            rec['colour_scale'] = {m: colour_scale(t.signed)
                                   for m, t in clip.items()}
            rec['files'] = sorted(sf.all())
            return rec
        writer.write_sample(out_dir, ci, ranks, record=record)
        if not clip:
            continue
        folder = osp.join(out_dir, COMPARE_LAYOUT.sample_folder(ci))
        first = next(iter(clip.values()))
        tiles, view = [], []
        for m, t in clip.items():
            sec = per['methods'][m]['seconds']
            lines = [[f'{m}  {sec:.2f} s', f'frame {int(i)}']
                     for i in t.frame_indices]
            tile = tile_frames(t.frames, t.maps, t.signed, lines, t.valid,
                               size=tile_size)
            tiles.append(tile)
            rel = COMPARE_LAYOUT.path('video', ci, stem=m)
            _write_mp4(osp.join(out_dir, rel), tile, first.fps)
            view.append(dict(method=m, label=f'{m} ({sec:.2f} s)',
                             video=rel))
        hh = min(x.shape[1] for x in tiles)
        ww = min(x.shape[2] for x in tiles)
        grid = grid_frames([x[:, :hh, :ww] for x in tiles])
        rel = COMPARE_LAYOUT.path('video', ci, stem='overlay')
        files.setdefault('video', osp.join(out_dir, rel))
        _write_mp4(osp.join(out_dir, rel), grid, first.fps)
        rel_m = COMPARE_LAYOUT.path('montage', ci)
        save_comparison_montage(
            osp.join(out_dir, rel_m), first.frames,
            [dict(name=m, maps=t.maps, signed=t.signed, valid=t.valid,
                  label=f'{m}\n{per["methods"][m]["seconds"]:.2f} s')
             for m, t in clip.items()], frame_indices=first.frame_indices,
            title=f'{osp.basename(per["video"])}: the same frames, one '
            'colour scale per kind')
        files.setdefault('montage', osp.join(out_dir, rel_m))
        clips_view.append(dict(name=osp.basename(per['video']),
                               montage=rel_m, tiles=view))
        del folder
    ag = summary['agreement']
    if ag['methods']:
        mat = np.array([[np.nan if x is None else x for x in r]
                        for r in ag['matrix']], float)
        files['agreement'] = plot_agreement(
            osp.join(out_dir, COMPARE_FILES['agreement']), mat,
            ag['methods'], title='agreement: Spearman rank correlation of '
            f'the maps (mean over {len(summary["videos"])} clip(s))')
    files['json'] = writer.write_index(out_dir, COMPARE_FILES['json'],
                                       summary)
    path = osp.join(out_dir, COMPARE_FILES['md'])
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(_markdown(summary))
    files['md'] = path
    data = dict(
        title=f'mmxai comparison: {", ".join(osp.basename(v) for v in summary["videos"])}',
        recommendation=summary['recommendation'],
        columns=[dict(key=k, label=lbl, help=h)
                 for k, lbl, h in TABLE_COLUMNS],
        rows=_rows(summary), not_applicable=summary['not_applicable'],
        clips=clips_view, agreement=COMPARE_FILES['agreement'])
    path = osp.join(out_dir, COMPARE_FILES['html'])
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(compare_viewer_html(data))
    files['html'] = path
    return files
