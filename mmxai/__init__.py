"""mmxai: spatio-temporal explanations for MMAction2 video recognizers."""
from . import compat

compat.apply()  # before anything imports mmaction.models

from .version import __version__  # noqa: E402
from . import registry  # noqa: E402,F401
from .checkpoint import install_toolbox_loader  # noqa: E402

install_toolbox_loader()  # the toolbox's tools load checkpoints safely
from . import models  # noqa: E402,F401
from . import adapters, explainers  # noqa: E402,F401
# Registers hooks, metrics, visualizers and datasets, so that a config's
# custom_imports=['mmxai'] makes every mmxai component available.
from . import datasets, engine, evaluation, outputs, visualization  # noqa: E402,F401
from .explainers import Explanation, build_explainer  # noqa: E402

__all__ = ['__version__', 'Explanation', 'build_explainer']
