"""``OutputWriter``: the one writer of per-sample outputs.

The CLI, ``explain_video``, ``ExplainHook`` and the dataset runner all write
a sample's files here, with the names of :mod:`~mmxai.outputs.vocabulary`
and the paths of a :class:`~mmxai.outputs.layout.Layout`. A sample's files
are staged and moved in together (records last), so a kill leaves either
all of them or none under their final names.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..fileio import staged_dir, write_json, write_npz
from .extras import extras_writer
from .layout import Layout
from .track import FrameTrack, colour_scale, display_maps
from .vocabulary import resolve_outputs

__all__ = ['RankOutputs', 'SampleFiles', 'OutputWriter']


@dataclass
class RankOutputs:
    """What is written for one explained target of a sample.

    Attributes:
        arrays: the ``npz`` arrays (e.g. ``Explanation.to_numpy()``).
        tracks: the frame tracks drawn for the visual outputs.
        suffix: ``''`` for the primary target, ``'_top2'`` ... after it.
    """
    arrays: Dict[str, np.ndarray]
    tracks: List[FrameTrack] = field(default_factory=list)
    suffix: str = ''


@dataclass
class SampleFiles:
    """Paths written for one sample, relative to its folder.

    Attributes:
        ranks: per :class:`RankOutputs`, ``{name: [paths]}``.
        extras: method-specific files.
        record: the JSON record, if written.
    """
    ranks: List[Dict[str, List[str]]] = field(default_factory=list)
    extras: List[str] = field(default_factory=list)
    record: Optional[str] = None

    def rank_files(self, r: int) -> List[str]:
        """Paths of rank ``r`` in the order written."""
        return [p for paths in self.ranks[r].values() for p in paths]

    def all(self) -> List[str]:
        """Every path but the record."""
        return [p for r in range(len(self.ranks))
                for p in self.rank_files(r)] + list(self.extras)


class OutputWriter:
    """Write the outputs of explained samples.

    Args:
        outputs: names from :data:`~mmxai.outputs.OUTPUT_NAMES` (deprecated
            aliases are accepted with a warning).
        layout: where each output goes.
        alpha, cmap: heat-map blending and colour map (non-negative maps).
        signed_cmap: diverging colour map of signed tracks, centred at 0
            (see :mod:`~mmxai.outputs.track`).
        panel, min_size: label panel position, and the shorter side frames
            are upscaled to before it is drawn.
        gif_max_size: longest GIF side (None: as drawn).
        json_indent: indentation of the records.
    """

    def __init__(self, outputs: Sequence[str], layout: Layout,
                 alpha: float = 0.5, cmap: str = 'jet', panel: str = 'top',
                 min_size: int = 256, gif_max_size: Optional[int] = None,
                 json_indent: int = 1, signed_cmap: str = 'RdBu_r') -> None:
        self.outputs = resolve_outputs(outputs)
        self.layout = layout
        self.alpha = alpha
        self.cmap = cmap
        self.signed_cmap = signed_cmap
        self.panel = panel
        self.min_size = min_size
        self.gif_max_size = gif_max_size
        self.json_indent = json_indent

    def wants(self, *names: str) -> bool:
        """Whether any of ``names`` is written."""
        return any(n in self.outputs for n in names)

    @property
    def needs_frames(self) -> bool:
        """Whether frames must be prepared (a visual output is asked for)."""
        return self.wants('video', 'gif', 'montage')

    def write_sample(self, root: str, key: int, ranks: Sequence[RankOutputs],
                     record: Optional[Callable[[SampleFiles], dict]] = None,
                     explanation: Any = None,
                     extras_frames: Optional[np.ndarray] = None,
                     class_names: Optional[Sequence[str]] = None
                     ) -> SampleFiles:
        """Write sample ``key``'s files under ``root``.

        Args:
            ranks: one :class:`RankOutputs` per explained target.
            record: builds the JSON record from the written files (called
                last, so the record lists exactly what exists); a dict
                record gets ``colour_scale`` (how the primary explanation's
                maps are drawn) unless it has one.
            explanation: the sample's primary explanation, for the
                method's registered extras (e.g. CFP's pyramid).
            extras_frames: uint8 ``[T, H, W, 3]`` for those extras.
        Returns:
            the written paths, relative to the sample's folder.
        """
        lay = self.layout
        base = lay.sample_folder(key)
        files = SampleFiles()
        extra_fn = None if explanation is None else \
            extras_writer(getattr(explanation, 'method', ''))
        if not self.outputs:  # metrics only
            return files
        with staged_dir(root) as stage:
            def out(kind: str, stem: str = '', suffix: str = ''):
                rel = lay.path(kind, key, stem, suffix)
                return osp.join(stage, rel), osp.relpath(rel, base or '.')

            for rank in ranks:
                done: Dict[str, List[str]] = {}
                if 'npz' in self.outputs:
                    path, rel = out('npz', suffix=rank.suffix)
                    write_npz(path, rank.arrays)
                    done['npz'] = [rel]
                for track in rank.tracks:
                    for name, rel in self._write_track(track, out):
                        done.setdefault(name, []).append(rel)
                files.ranks.append(done)
            if extra_fn is not None:
                folder = osp.join(stage, lay.extras_folder(key))
                for path in extra_fn(explanation, folder, extras_frames,
                                     class_names) or []:
                    files.extras.append(osp.relpath(
                        osp.relpath(path, stage), base or '.'))
            if 'json' in self.outputs and record is not None:
                path, rel = out('json')
                files.record = rel
                rec = record(files)
                if isinstance(rec, dict) and 'colour_scale' not in rec \
                        and hasattr(explanation, 'raw_maps'):
                    rec['colour_scale'] = self.colour_scale(explanation)
                write_json(path, rec, indent=self.json_indent)
        return files

    def colour_scale(self, explanation: Any) -> str:
        """How sample 0 of ``explanation`` is drawn, in words."""
        return colour_scale(display_maps(explanation)[1], self.cmap,
                            self.signed_cmap)

    def _write_track(self, track: FrameTrack, out) -> List[tuple]:
        """Draw and write one track; returns ``[(name, relative path)]``."""
        from .. import visualization as vis
        written = []
        fps = max(float(track.fps), 1.0)
        signed = bool(track.signed)
        cmap = self.signed_cmap if signed else self.cmap
        if self.wants('video', 'gif'):
            drawn = vis.overlay_heatmap(vis.as_rgb_frames(track.frames),
                                        track.maps, alpha=self.alpha,
                                        cmap=cmap, valid_mask=track.valid,
                                        signed=signed)
            if len(track.lines):
                drawn = vis.draw_label_panel(drawn, list(track.lines),
                                             position=self.panel,
                                             min_size=self.min_size)
            if 'video' in self.outputs:
                path, rel = out('video', track.stem)
                vis.write_video(path, drawn, fps=fps)
                written.append(('video', rel))
            if 'gif' in self.outputs:
                path, rel = out('gif', track.stem)
                vis.write_gif(path, drawn, fps=min(fps, 25),
                              max_size=self.gif_max_size)
                written.append(('gif', rel))
        if 'montage' in self.outputs:
            path, rel = out('montage', track.stem)
            vis.save_montage(path, track.frames, track.maps,
                             valid_mask=track.valid,
                             source_indices=track.frame_indices,
                             alpha=self.alpha, cmap=cmap,
                             suptitle=track.title, signed=signed)
            written.append(('montage', rel))
        if 'plot' in self.outputs:
            path, rel = out('plot', track.stem)
            vis.plot_temporal_importance(
                path, track.plot_series(), frame_indices=track.importance_x,
                title=track.plot_title or track.title,
                colors=track.plot_colors)
            written.append(('plot', rel))
        return written

    def write_index(self, root: str, name: str, obj: Any) -> str:
        """A run-level JSON file (``index.json``, ``manifest.json``)."""
        return write_json(osp.join(root, name), obj,
                          indent=self.json_indent)
