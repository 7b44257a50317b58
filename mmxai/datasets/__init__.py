"""Synthetic action dataset with known evidence regions."""
from .synthetic import (CLASSES, DEFAULT_CFG, count_frames, generate_dataset,
                        load_gt, make_clip, read_video, save_clip, write_video)
from .synthetic_dataset import SyntheticVideoDataset
from .phase_labels import (CHOLEC80_PHASES, CHOLEC80_TOOLS,  # noqa: E402
                           frame_ground_truth, read_tool_file,
                           write_phase_file, write_tool_file)
from .phase_dataset import (Cholec80Dataset, PhaseVideoDataset,  # noqa: E402
                            parse_video_ids, window_frames)
from .procedures import (generate_procedures, make_procedure,  # noqa: E402
                         write_procedure)

__all__ = [
    'CLASSES', 'DEFAULT_CFG', 'make_clip', 'generate_dataset', 'save_clip',
    'write_video', 'read_video', 'count_frames', 'load_gt',
    'SyntheticVideoDataset', 'CHOLEC80_PHASES', 'CHOLEC80_TOOLS',
    'frame_ground_truth', 'read_tool_file', 'write_phase_file',
    'write_tool_file', 'Cholec80Dataset', 'PhaseVideoDataset',
    'parse_video_ids', 'window_frames', 'generate_procedures',
    'make_procedure', 'write_procedure'
]
