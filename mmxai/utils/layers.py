"""Dotted module names -> modules, with suggestions for unknown names."""
import difflib
from typing import List

from torch import nn

from ..errors import LayerNotFoundError


def layer_names(model: nn.Module) -> List[str]:
    """All named sub-modules of ``model`` (dotted paths, the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the sub-module called ``name`` (e.g. ``'backbone.layer4'``).

    ``/`` is accepted as a separator too (MMAction2's ``vis_cam.py`` style).
    Raises:
        LayerNotFoundError: unknown name; the message lists the closest names.
    """
    if not isinstance(name, str):
        raise LayerNotFoundError(
            f'layer names are dotted module names such as '
            f"'backbone.layer4', got {name!r}")
    dotted = name.replace('/', '.').strip('.')
    modules = dict(model.named_modules())
    if dotted in modules and dotted:
        return modules[dotted]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(dotted, names, n=5, cutoff=0.5)
    if not close:  # fall back to names that share the first component
        head = dotted.split('.')[0]
        close = [n for n in names if n.startswith(head)][:5] or \
            sorted({n.split('.')[0] for n in names})[:8]
    raise LayerNotFoundError(
        f"unknown layer '{name}' in {type(model).__name__}; "
        f"did you mean: {', '.join(close)}?")
