import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault('MPLBACKEND', 'Agg')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'full_coverage: walk every recognition config shipped with '
        'MMAction2 and run every method (slow; CI runs it with '
        '-m full_coverage)')


def pytest_collection_modifyitems(config, items):
    """Skip ``full_coverage`` tests unless selected (``-m full_coverage``)
    or ``MMXAI_FULL_COVERAGE=1`` is set."""
    import pytest
    expr = config.getoption('-m') or ''
    if os.environ.get('MMXAI_FULL_COVERAGE') or (
            'full_coverage' in expr and 'not full_coverage' not in expr):
        return
    skip = pytest.mark.skip(
        reason='full config walk: run with -m full_coverage')
    for item in items:
        if 'full_coverage' in item.keywords:
            item.add_marker(skip)
