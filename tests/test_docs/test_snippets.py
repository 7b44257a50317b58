"""Every ```python block of README.md and docs/*.md runs as written.

A block is one of:

* runnable (no marker): run as a script in a fresh interpreter whose working
  directory is a temporary folder holding links to the repository's
  ``configs/``, ``demo/`` and ``tools/``, so the relative paths of the
  snippets (``configs/demo/i3d_tiny_synthetic.py``,
  ``demo/i3d_tiny_synthetic.pth``, ``demo/demo.mp4``) resolve as from the
  repository root and everything they write (``work_dirs/``, ``data/``)
  lands in the temporary folder;
* a config fragment, marked ``<!-- snippet: config -->`` on the line
  before: written to a file in that folder and loaded with
  ``mmengine.Config.fromfile`` (``_base_`` included) after the placeholders
  of :data:`PLACEHOLDERS` are replaced; its ``custom_imports`` are imported
  and its ``custom_hooks`` built;
* not runnable here, marked ``<!-- snippet: skip (reason) -->``: reported
  as skipped with the reason (``pytest -rs`` lists them).
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
from typing import List, NamedTuple, Optional

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: What config fragments' placeholder paths stand for in the test.
PLACEHOLDERS = {
    'path/to/your_experiment.py': 'configs/demo/i3d_tiny_synthetic.py',
    'path/to/mmxai/': '',
}
#: Repository folders linked into the snippets' working directory.
LINKED = ('configs', 'demo', 'tools')
TIMEOUT = 180

_FENCE = re.compile(r'^```python[ \t]*\n(.*?)^```[ \t]*$', re.M | re.S)
_MARKER = re.compile(r'<!--\s*snippet:\s*(\w+)\s*(?:\((.*)\))?\s*-->')


class Snippet(NamedTuple):
    doc: str      # path relative to ROOT
    line: int     # line of the opening fence
    code: str
    kind: str     # 'run', 'config' or 'skip'
    reason: Optional[str]

    @property
    def id(self) -> str:
        return f'{self.doc}:{self.line}'


def collect() -> List[Snippet]:
    docs = ['README.md'] + sorted(
        osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs', '*.md')))
    out = []
    for doc in docs:
        with open(osp.join(ROOT, doc), encoding='utf-8') as f:
            out += parse(doc, f.read())
    return out


def parse(doc: str, text: str) -> List[Snippet]:
    """The ```python blocks of one Markdown text, with their markers."""
    out = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()].rstrip('\n').rsplit('\n', 1)[-1]
        marker = _MARKER.search(before)
        kind = marker.group(1) if marker else 'run'
        reason = marker.group(2) if marker else None
        out.append(Snippet(doc, text.count('\n', 0, m.start()) + 1,
                           m.group(1), kind, reason))
    return out


SNIPPETS = collect()


def test_snippets_found_and_marked():
    """The collector sees the README's blocks; every marker is known and a
    skipped block says why."""
    assert sum(s.doc == 'README.md' for s in SNIPPETS) >= 3
    for s in SNIPPETS:
        assert s.kind in ('run', 'config', 'skip'), s.id
        if s.kind == 'skip':
            assert s.reason and s.reason.strip(), \
                f'{s.id}: <!-- snippet: skip (reason) --> needs a reason'


def test_parse_markers():
    text = ('text\n```python\nx = 1\n```\n\n<!-- snippet: config -->\n'
            '```python\na = 2\n```\n<!-- snippet: skip (needs a GPU) -->\n'
            '```python\nimport torch; torch.cuda.init()\n```\n'
            '```bash\nls\n```\n')
    got = [(s.line, s.code, s.kind, s.reason) for s in parse('x.md', text)]
    assert got == [(2, 'x = 1\n', 'run', None),
                   (7, 'a = 2\n', 'config', None),
                   (11, 'import torch; torch.cuda.init()\n', 'skip',
                    'needs a GPU')]


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp('snippets')
    for name in LINKED:
        os.symlink(osp.join(ROOT, name), d / name)
    return d


@pytest.mark.parametrize('snippet', SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet(snippet, workdir):
    if snippet.kind == 'skip':
        pytest.skip(f'{snippet.id}: {snippet.reason}')
    if snippet.kind == 'config':
        _check_config(snippet, workdir)
        return
    script = workdir / f'snippet_{snippet.line}.py'
    script.write_text(snippet.code)
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, script.name], cwd=workdir,
                          env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, (
        f'{snippet.id} failed:\n{snippet.code}\n--- stderr ---\n'
        f'{proc.stderr[-3000:]}')


def _check_config(snippet: Snippet, workdir):
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    code = snippet.code
    for k, v in PLACEHOLDERS.items():
        code = code.replace(k, v)
    path = workdir / f'snippet_cfg_{snippet.line}.py'
    path.write_text(code)
    cfg = Config.fromfile(str(path))
    imports = cfg.get('custom_imports')
    if imports:
        import_modules_from_strings(**imports)
    hooks = cfg.get('custom_hooks', [])
    if '_base_' in code:  # inherits beside a model config: a full config
        assert 'model' in cfg and 'test_dataloader' in cfg, snippet.id
    if hooks:
        import mmxai  # noqa: F401  (registers the mmxai. types)
        from mmaction.registry import HOOKS  # the Runner's (mmaction scope)
        for h in hooks:
            HOOKS.build(dict(h))
