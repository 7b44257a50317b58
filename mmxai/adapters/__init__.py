"""Model adapters: one per recognizer family (every module is imported, so a
new family only needs its own file registering into ``ADAPTERS``)."""
import importlib
import pkgutil

from .base import Recognizer3DAdapter, build_adapter, unwrap_model, upsample_maps
from .frames import inputs_to_frames, video_to_frames
from .recognizer2d import Recognizer2DAdapter

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_info.name}')

__all__ = ['Recognizer3DAdapter', 'Recognizer2DAdapter', 'build_adapter',
           'unwrap_model', 'upsample_maps', 'inputs_to_frames', 'video_to_frames']
