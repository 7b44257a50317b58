"""The one output vocabulary of the CLI, the API, the hook and the dataset
runner.

===========  =============================================================
name         file(s)
===========  =============================================================
``json``     the record: method, settings, target, top-5, files, ...
``npz``      arrays: ``maps``, ``raw_maps`` ``[1, V, T, H, W]``, targets,
             scores, layer maps (+ maps on the original frames for videos)
``video``    MP4 overlay (heat map, labels) per view / on the original video
``gif``      the same overlay as an animated GIF
``montage``  PNG grid of key frames (overlays above, frames below)
``plot``     PNG plot of the map mass per frame (temporal importance)
===========  =============================================================

Old names (until 0.3, with a ``DeprecationWarning``): the hook's ``maps``
(= ``npz``), ``overlay`` (= ``video``) and ``temporal`` (= ``plot``).
"""
import warnings
from typing import Iterable, Tuple, Type, Union

from ..errors import MMXAIError, OutputError

OUTPUT_NAMES: Tuple[str, ...] = ('json', 'npz', 'video', 'gif', 'montage',
                                 'plot')
#: Deprecated names -> their name in :data:`OUTPUT_NAMES`.
ALIASES = {'maps': 'npz', 'overlay': 'video', 'temporal': 'plot'}
#: Frame-based outputs (need frames to draw on).
VISUAL_OUTPUTS = ('video', 'gif', 'montage', 'plot')

#: Defaults: a video (CLI, ``explain_video``), a test-set hook, a dataset run.
VIDEO_DEFAULT = ('video', 'montage', 'plot', 'npz', 'json')
HOOK_DEFAULT = ('json', 'npz', 'video')
DATASET_DEFAULT = ('json', 'npz')

__all__ = ['OUTPUT_NAMES', 'ALIASES', 'VISUAL_OUTPUTS', 'VIDEO_DEFAULT',
           'HOOK_DEFAULT', 'DATASET_DEFAULT', 'resolve_outputs']


def resolve_outputs(outputs: Union[str, Iterable[str], None],
                    where: str = 'outputs',
                    error: Type[MMXAIError] = OutputError) -> Tuple[str, ...]:
    """Check ``outputs`` and map deprecated names to their new names.

    Returns the names in the given order, duplicates dropped. ``None`` or
    ``()`` means nothing is written.

    Raises:
        error: an unknown name (the message lists the valid ones).
    """
    if outputs is None:
        return ()
    items = (outputs, ) if isinstance(outputs, str) else tuple(outputs)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise error(f'{where}: output names are strings, got {item!r}')
        name = item.strip().lower()
        if name in ALIASES:
            warnings.warn(
                f"{where}: output name '{name}' is deprecated, use "
                f"'{ALIASES[name]}'", DeprecationWarning, stacklevel=3)
            name = ALIASES[name]
        if name not in OUTPUT_NAMES:
            raise error(f"{where}: unknown output '{item}'; choose from "
                        f"{', '.join(OUTPUT_NAMES)}")
        if name not in names:
            names.append(name)
    return tuple(names)
