"""Model adapters: one per recognizer family."""
from .base import Recognizer3DAdapter, build_adapter, unwrap_model, upsample_maps
from .recognizer2d import Recognizer2DAdapter

__all__ = ['Recognizer3DAdapter', 'Recognizer2DAdapter', 'build_adapter',
           'unwrap_model', 'upsample_maps']
