"""The files of a phase-sequence explanation
(:func:`mmxai.apis.explain_phase_sequence`), under ``out_dir``:

======================  =================================================
file                    what
======================  =================================================
``sequence.json``       settings, the prediction's accuracy, one record per
                        explained time (target, scores, IG completeness,
                        Shapley players, top frames), the files
``importance.npz``      ``importance_<method>`` float32 ``[N, T]`` (rows:
                        explained times, columns: grid frames), ``times``,
                        ``times_s``, ``targets``, ``context_start``,
                        ``frame_inds``, ``pred``, ``probs`` (float16
                        ``[T, K]``), ``gt``, ``class_names``
``importance.csv``      one row per (method, explained time, context
                        frame): the matrices' non-zero part, long format
``importance.png``      phase ribbons over the video, then per explained
                        time its importance over its context
``frames.png``          CAMs on each time's top frames (``cams=k``)
``features/``           the feature cache (:class:`~mmxai.apis.feature_cache.
                        FeatureCache`)
======================  =================================================

``sequence.json`` and ``importance.npz`` go through the one
:class:`~mmxai.outputs.OutputWriter` (staged, record last); the CSV and the
pictures are each written atomically.
"""
import csv
import io
import os.path as osp
from typing import Any, Dict, Sequence

import numpy as np

from ..fileio import atomic_path
from .layout import Layout
from .writer import OutputWriter, RankOutputs

__all__ = ['PHASE_SEQUENCE_LAYOUT', 'PHASE_SEQUENCE_FILES',
           'write_phase_sequence', 'importance_rows']

#: The writer's part: the record and the arrays.
PHASE_SEQUENCE_LAYOUT = Layout(json='sequence.json', npz='importance.npz',
                               plot='importance.png')
#: The other files, relative to ``out_dir``.
PHASE_SEQUENCE_FILES = dict(csv='importance.csv', png='importance.png',
                            frames='frames.png', features='features')
CSV_COLUMNS = ('method', 'time_s', 'grid_frame', 'target', 'target_name',
               'source_s', 'source_grid_frame', 'lag_s', 'importance')


def importance_rows(res: Any):
    """The CSV rows (:data:`CSV_COLUMNS`) of a result."""
    fps = res.fps
    for m, mat in res.importance.items():
        for i, t in enumerate(res.times):
            t = int(t)
            a = int(res.context_start[i])
            c = int(res.targets[i])
            ts = res.frame_inds[t] / fps
            for s in range(a, t + 1):
                ss = res.frame_inds[s] / fps
                yield (m, f'{ts:.3f}', t, c, res.label(c), f'{ss:.3f}', s,
                       f'{ts - ss:.3f}', f'{float(mat[i, s]):.6g}')


def write_phase_sequence(out_dir: str, res: Any,
                         outputs: Sequence[str] = ('json', 'npz', 'csv',
                                                   'png')) -> Dict[str, str]:
    """Write ``res`` (a ``PhaseSequenceExplanation``) under ``out_dir``;
    returns ``{name: path}``."""
    files: Dict[str, str] = {}
    if 'csv' in outputs:
        path = osp.join(out_dir, PHASE_SEQUENCE_FILES['csv'])
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_COLUMNS)
        w.writerows(importance_rows(res))
        with atomic_path(path) as tmp:
            with open(tmp, 'w', newline='') as f:
                f.write(buf.getvalue())
        files['csv'] = path
    if 'png' in outputs:
        from ..visualization.phase_sequence import plot_phase_sequence
        files['png'] = plot_phase_sequence(
            osp.join(out_dir, PHASE_SEQUENCE_FILES['png']), res)
        if res.cams:
            from ..visualization.phase_sequence import plot_frame_cams
            files['frames'] = plot_frame_cams(
                osp.join(out_dir, PHASE_SEQUENCE_FILES['frames']), res)
    files['features'] = osp.join(out_dir, PHASE_SEQUENCE_FILES['features'])
    writer_outputs = [o for o in ('json', 'npz') if o in outputs]
    if writer_outputs:
        arrays = {f'importance_{m}': v.astype(np.float32)
                  for m, v in res.importance.items()}
        arrays.update(
            times=np.asarray(res.times, np.int64),
            times_s=np.asarray(res.times_s, np.float64),
            targets=np.asarray(res.targets, np.int64),
            context_start=np.asarray(res.context_start, np.int64),
            frame_inds=np.asarray(res.frame_inds, np.int64),
            pred=np.asarray(res.pred, np.int64),
            probs=np.asarray(res.probs, np.float16),
            class_names=np.asarray(res.class_names, dtype=str))
        if res.gt is not None:
            arrays['gt'] = np.asarray(res.gt, np.int64)
        writer = OutputWriter(writer_outputs, PHASE_SEQUENCE_LAYOUT)

        def record(sf):
            listed = dict(files)
            if sf.ranks and 'npz' in sf.ranks[0]:
                listed['npz'] = osp.join(out_dir, sf.ranks[0]['npz'][0])
            listed['json'] = osp.join(out_dir, PHASE_SEQUENCE_LAYOUT.json)
            return dict(kind='phase_sequence', video=res.video,
                        settings=res.settings, accuracy=res.accuracy,
                        class_names=res.class_names,
                        times=[r for r in res.records],
                        timings=res.timings, files=listed)
        sf = writer.write_sample(out_dir, 0, [RankOutputs(arrays)],
                                 record=record)
        if sf.ranks and 'npz' in sf.ranks[0]:
            files['npz'] = osp.join(out_dir, sf.ranks[0]['npz'][0])
        if sf.record:
            files['json'] = osp.join(out_dir, sf.record)
    return files
