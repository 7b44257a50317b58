"""mmxai: spatio-temporal explanations for MMAction2 video recognizers."""
from . import compat

compat.apply()  # before anything imports mmaction.models

from .version import __version__  # noqa: E402
from . import registry  # noqa: E402,F401

__all__ = ['__version__']
