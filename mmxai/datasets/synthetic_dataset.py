"""``SyntheticVideoDataset``: MMAction2's ``VideoDataset`` plus ground-truth mask paths."""
import os.path as osp
from typing import List, Optional

from mmaction.datasets import VideoDataset

from ..registry import DATASETS
from .synthetic import CLASSES


@DATASETS.register_module()
class SyntheticVideoDataset(VideoDataset):
    """A :class:`~mmaction.datasets.VideoDataset` of synthetic clips.

    Each data info also carries ``gt_mask_path``: the ``.npz`` written next to
    the video by :func:`mmxai.datasets.generate_dataset` (``mask`` bool
    ``[T, H, W]``, ``active_frames``, ``label``). Only the path is stored; the
    mask is read by whoever needs it (e.g. evaluation metrics).

    Args:
        mask_prefix: folder the annotation's relative paths are resolved
            against for masks; ``None``: the same as ``data_prefix['video']``.
        **kwargs: :class:`~mmaction.datasets.VideoDataset` arguments.
    """

    METAINFO = dict(classes=tuple(CLASSES))

    def __init__(self, *args, mask_prefix: Optional[str] = None, **kwargs) -> None:
        self.mask_prefix = mask_prefix
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Video infos of :class:`VideoDataset`, each with ``gt_mask_path``."""
        data_list = super().load_data_list()
        video_prefix = self.data_prefix.get('video') or ''
        for info in data_list:
            stem = osp.splitext(info['filename'])[0] + '.npz'
            if self.mask_prefix is not None:
                rel = osp.relpath(stem, video_prefix) if video_prefix else stem
                stem = osp.join(self.mask_prefix, rel)
            info['gt_mask_path'] = stem
        return data_list
