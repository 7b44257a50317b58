"""Small helpers shared by explainers, adapters and tools."""
from .layers import get_layer, layer_names
from .model_state import preserved_model_state
from .normalize import minmax_normalize

__all__ = ['get_layer', 'layer_names', 'preserved_model_state',
           'minmax_normalize']
