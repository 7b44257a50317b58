"""Headless Chromium for the viewers' tests: find it, load a page whose
injected script writes a ``<pre id="probe">`` JSON report, read the report
back; screenshots.

The flags are those this sandbox needs (no sandbox as root, no GPU, no
background networking: the network is closed) plus a fresh profile per run.
"""
import json
import re
import shutil
import subprocess
import tempfile
from typing import Optional, Sequence

__all__ = ['find_chromium', 'chromium_probe', 'chromium_screenshot']

_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
          '--disable-background-networking', '--disable-component-update',
          '--disable-sync', '--disable-quic',
          '--allow-file-access-from-files')
_PROBE = re.compile(r'<pre id="probe">(.*?)</pre>', re.S)


def find_chromium() -> Optional[str]:
    """Path of ``chromium`` (or ``chromium-browser`` / ``google-chrome``),
    ``None`` if none is installed."""
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: Sequence[str], timeout: float):
    with tempfile.TemporaryDirectory(prefix='mmxai_chromium_') as profile:
        return subprocess.run(
            [browser, *_FLAGS, f'--user-data-dir={profile}', *args],
            capture_output=True, text=True, timeout=timeout)


def chromium_probe(browser: str, page: str,
                   budgets_ms: Sequence[int] = (8000, 16000, 30000),
                   timeout: float = 120) -> dict:
    """The JSON of ``page``'s ``<pre id="probe">`` after load (``page``: a
    file path). Tried with each virtual-time budget in turn until the probe
    is in the dumped DOM (a loaded machine may need the longer ones).

    Raises:
        AssertionError: no probe in the page after the last budget
            (chromium's stderr tail in the message).
    """
    url = 'file://' + str(page)
    for budget in budgets_ms:
        proc = _run(browser, [f'--virtual-time-budget={budget}',
                              '--dump-dom', url], timeout)
        m = _PROBE.search(proc.stdout)
        if m:
            return json.loads(m.group(1).replace('&quot;', '"')
                              .replace('&amp;', '&'))
    raise AssertionError('no probe in the dumped page: '
                         + proc.stderr[-2000:])


def chromium_screenshot(browser: str, page: str, png: str,
                        size: str = '1280,900', budget_ms: int = 4000,
                        timeout: float = 90) -> None:
    """Render ``page`` (a file path) into ``png`` at ``size`` pixels."""
    _run(browser, [f'--virtual-time-budget={budget_ms}',
                   f'--window-size={size}', f'--screenshot={png}',
                   'file://' + str(page)], timeout)
