"""The one writer of per-sample outputs and its one vocabulary.

Layer: above ``visualization`` and ``evaluation``, below ``engine`` and
``apis`` (which both write through :class:`OutputWriter`).
"""
from .extras import extras_writer, write_cfp_figures
from .layout import (COMPARE_LAYOUT, DATASET_LAYOUT, HOOK_LAYOUT,
                     LONG_VIDEO_LAYOUT, VIDEO_LAYOUT, Layout)
from .records import class_label, explanation_record, headline, top5_line
from .track import (FrameTrack, colour_scale, combine_over_frames,
                    display_maps, map_mass, view_tracks)
from .vocabulary import (ALIASES, DATASET_DEFAULT, HOOK_DEFAULT, OUTPUT_NAMES,
                         VIDEO_DEFAULT, VISUAL_OUTPUTS, resolve_outputs)
from .timeline import (TIMELINE_FILES, Timeline, WindowRecord,
                       read_window_maps)
from .sequence_track import SequenceTrack
from .writer import OutputWriter, RankOutputs, SampleFiles
from .compare import COMPARE_FILES, write_comparison

__all__ = [
    'OutputWriter', 'RankOutputs', 'SampleFiles', 'FrameTrack', 'map_mass', 'view_tracks',
    'display_maps', 'colour_scale', 'combine_over_frames',
    'Layout', 'VIDEO_LAYOUT', 'HOOK_LAYOUT', 'DATASET_LAYOUT', 'OUTPUT_NAMES',
    'ALIASES', 'VISUAL_OUTPUTS', 'VIDEO_DEFAULT', 'HOOK_DEFAULT',
    'DATASET_DEFAULT', 'resolve_outputs', 'extras_writer',
    'write_cfp_figures', 'class_label', 'explanation_record', 'headline',
    'top5_line', 'LONG_VIDEO_LAYOUT', 'Timeline', 'WindowRecord',
    'TIMELINE_FILES', 'read_window_maps', 'COMPARE_LAYOUT', 'COMPARE_FILES',
    'write_comparison', 'SequenceTrack']
