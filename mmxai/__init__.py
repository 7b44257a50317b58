"""mmxai: spatio-temporal explanations for MMAction2 video recognizers."""
from . import compat

compat.apply()  # before anything imports mmaction.models

from .version import __version__  # noqa: E402
from . import registry  # noqa: E402,F401
from . import adapters, explainers  # noqa: E402,F401
from .explainers import Explanation, build_explainer  # noqa: E402

__all__ = ['__version__', 'Explanation', 'build_explainer']
