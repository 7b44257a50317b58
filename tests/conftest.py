import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault('MPLBACKEND', 'Agg')


#: Slow markers, skipped by the default run (``make test``) unless selected
#: with ``-m`` or the environment variable; ``make test-full`` (CI) runs them.
SLOW_MARKERS = {
    'sweep': ('MMXAI_SWEEP', 'per-family sweep: every recognizer family of '
              'representative_configs (make test-full)'),
    'full_coverage': ('MMXAI_FULL_COVERAGE', 'walk every recognition config '
                      'shipped with MMAction2 and run every method '
                      '(make test-full)'),
}


def pytest_configure(config):
    for name, (_, text) in SLOW_MARKERS.items():
        config.addinivalue_line('markers', f'{name}: {text}')


def pytest_collection_modifyitems(config, items):
    """Skip slow-marked tests unless selected (``-m sweep``) or their
    environment variable is set."""
    import pytest
    expr = config.getoption('-m') or ''
    for name, (env, text) in SLOW_MARKERS.items():
        if os.environ.get(env) or (name in expr and f'not {name}' not in expr):
            continue
        skip = pytest.mark.skip(reason=f'{text}: run with -m {name}')
        for item in items:
            if name in item.keywords:
                item.add_marker(skip)
