"""Every module of mmxai imports only from its own layer or below
(the order of docs/architecture.md), function-level imports included."""
import ast
import os
import os.path as osp

import mmxai

#: Layer of each top-level module/package of mmxai (docs/architecture.md).
#: Packages on one layer do not import each other.
LAYERS = {
    'version': 0, 'errors': 0, 'compat': 0, 'registry': 1, 'fileio': 1,
    'checkpoint': 1, 'baselines': 1, 'utils': 1, 'preflight': 1,
    'models': 1,
    'adapters': 2,
    'explainers': 3,
    'evaluation': 4, 'visualization': 4,
    'outputs': 5, 'datasets': 5,
    'engine': 6,
    'apis': 7,
    'testing': 8,
}
ROOT = osp.dirname(mmxai.__file__)


def _modules():
    for dp, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith('.py'):
                path = osp.join(dp, f)
                rel = osp.relpath(path, ROOT)[:-3].replace(os.sep, '.')
                yield path, rel


def _imported(path: str, rel: str):
    """Top-level mmxai parts imported by the module at ``path``."""
    tree = ast.parse(open(path).read())
    pkg = rel.split('.')[:-1]  # the package the module is in
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split('.')
                if parts[0] == 'mmxai' and len(parts) > 1:
                    yield parts[1], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                parts = base + (node.module.split('.') if node.module else [])
                if parts:
                    yield parts[0], node.lineno
                else:  # from . import x (in mmxai/__init__)
                    for a in node.names:
                        yield a.name, node.lineno
            elif node.module and node.module.split('.')[0] == 'mmxai':
                parts = node.module.split('.')
                if len(parts) > 1:
                    yield parts[1], node.lineno
                else:
                    for a in node.names:
                        yield a.name, node.lineno


def test_every_top_level_part_has_a_layer():
    parts = {rel.split('.')[0] for _, rel in _modules()} - {'__init__'}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_no_module_imports_from_a_layer_above_it():
    bad = []
    for path, rel in _modules():
        own = rel.split('.')[0]
        if own == '__init__':
            continue  # the package root registers everything
        for part, line in _imported(path, rel):
            if part not in LAYERS or part == own:
                continue
            if LAYERS[part] >= LAYERS[own]:
                bad.append(f'mmxai/{rel.replace(".", "/")}.py:{line} '
                           f'({own}, layer {LAYERS[own]}) imports {part} '
                           f'(layer {LAYERS[part]})')
    assert not bad, '\n'.join(bad)


def test_checker_sees_relative_and_function_level_imports(tmp_path):
    src = tmp_path / 'm.py'
    src.write_text('from ..engine import x\n'
                   'def f():\n    from mmxai.apis import y\n'
                   '    import mmxai.outputs.writer\n')
    found = sorted(p for p, _ in _imported(str(src), 'visualization.m'))
    assert found == ['apis', 'engine', 'outputs']


def test_test_module_names_are_unique():
    """pytest imports test modules by basename (no packages under tests/):
    two ``test_x.py`` in different folders break the collection."""
    tests = osp.dirname(osp.abspath(__file__))
    seen = {}
    for dp, _, files in os.walk(tests):
        for f in files:
            if f.startswith('test_') and f.endswith('.py'):
                assert f not in seen, (f, dp, seen.get(f))
                seen[f] = dp
