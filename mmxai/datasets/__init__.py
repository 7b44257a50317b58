"""Synthetic action dataset with known evidence regions."""
from .synthetic import (CLASSES, DEFAULT_CFG, count_frames, generate_dataset,
                        load_gt, make_clip, read_video, save_clip, write_video)
from .synthetic_dataset import SyntheticVideoDataset

__all__ = [
    'CLASSES', 'DEFAULT_CFG', 'make_clip', 'generate_dataset', 'save_clip',
    'write_video', 'read_video', 'count_frames', 'load_gt',
    'SyntheticVideoDataset'
]
