"""Make the PyPI release of MMAction2 1.2.0 importable, touching only what is broken.

Each fix checks for its defect first and does nothing on a toolbox that does
not have it:

* ``mmaction/models/localizers/drn/`` is missing from the 1.2.0 wheel (upstream
  issue #2714), so ``import mmaction.models`` fails. When (and only when) the
  directory is absent, a placeholder ``DRN`` module is installed in
  ``sys.modules``; building a DRN then raises a clear error. The check looks at
  the file system: ``importlib.util.find_spec`` on the sub-package would import
  the broken parent package.
* ``mmaction.utils.dependency`` imports the ``importlib_metadata`` backport
  without declaring it. If the backport is absent, the standard library's
  ``importlib.metadata`` stands in for it.
* MMEngine 0.10.7 resolves ``mmaction::`` config paths through
  ``pkg_resources``, which setuptools >= 82 removed. If it cannot be imported, a
  minimal module with the three names MMEngine uses is installed.
"""
import importlib.metadata
import importlib.util
import os.path as osp
import sys
import types
import warnings

_APPLIED: list = []


def _mmaction_dir():
    spec = importlib.util.find_spec('mmaction')  # top level: imports nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _patch_drn() -> bool:
    root = _mmaction_dir()
    if root is None:
        return False
    localizers = osp.join(root, 'models', 'localizers')
    if not osp.isdir(localizers) or osp.isdir(osp.join(localizers, 'drn')):
        return False
    name = 'mmaction.models.localizers.drn'
    if name in sys.modules:
        return False

    class DRN:  # noqa: D401 - placeholder with a clear error
        """Placeholder for MMAction2's DRN localizer, missing from the wheel."""

        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                'DRN is not available: the installed mmaction2 1.2.0 wheel '
                'lacks mmaction/models/localizers/drn (upstream issue #2714).')

    pkg = types.ModuleType(name)
    pkg.__path__ = []  # a package, so that `.drn.drn` resolves
    pkg.__file__ = '<mmxai placeholder>'
    sub = types.ModuleType(name + '.drn')
    sub.__file__ = '<mmxai placeholder>'
    sub.DRN = DRN
    pkg.drn = sub
    sys.modules[name] = pkg
    sys.modules[name + '.drn'] = sub
    return True


def _patch_importlib_metadata() -> bool:
    try:
        import importlib_metadata  # noqa: F401
        return False
    except ImportError:
        sys.modules['importlib_metadata'] = importlib.metadata
        return True


def _patch_pkg_resources() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            import pkg_resources  # noqa: F401
        return False
    except ImportError:
        pass

    mod = types.ModuleType('pkg_resources')

    class DistributionNotFound(Exception):
        pass

    class _Distribution:

        def __init__(self, dist):
            self._dist = dist
            self.location = str(dist.locate_file(''))
            self.version = dist.version

        def has_metadata(self, name):
            return self._dist.read_text(name) is not None

        def get_metadata(self, name):
            return self._dist.read_text(name) or ''

    def get_distribution(name):
        try:
            return _Distribution(importlib.metadata.distribution(name))
        except importlib.metadata.PackageNotFoundError as e:
            raise DistributionNotFound(name) from e

    mod.DistributionNotFound = DistributionNotFound
    mod.get_distribution = get_distribution
    mod.__file__ = '<mmxai placeholder>'
    sys.modules['pkg_resources'] = mod
    return True


def apply() -> list:
    """Apply every needed fix once; return the names of those applied."""
    if not _APPLIED:
        for fix in (_patch_drn, _patch_importlib_metadata,
                    _patch_pkg_resources):
            if fix():
                _APPLIED.append(fix.__name__.replace('_patch_', ''))
        _APPLIED.append(None)  # marks 'done'
    return [a for a in _APPLIED if a]
