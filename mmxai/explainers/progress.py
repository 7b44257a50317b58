"""A progress bar with ETA that appears only for long runs.

``MMXAI_NO_PROGRESS=1`` in the environment turns every bar off (the CLIs'
``--no-progress`` / ``--quiet`` set it), unless a caller forces one on.
"""
import os
import sys
import time
from typing import Optional


class Progress:
    """A one-line progress bar with ETA on stderr.

    ``enabled=True`` always shows it; ``None`` (default) shows it only once a
    run has taken more than ``delay`` seconds (never with
    ``MMXAI_NO_PROGRESS=1``); ``False`` never.
    """

    def __init__(self, total: int, desc: str = '',
                 enabled: Optional[bool] = None, delay: float = 2.0):
        if enabled is None and os.environ.get('MMXAI_NO_PROGRESS') == '1':
            enabled = False
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled
        self.delay = delay
        self.done = 0
        self.start = time.perf_counter()
        self.shown = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled is False:
            return
        elapsed = time.perf_counter() - self.start
        if self.enabled is None and elapsed < self.delay and not self.shown:
            return
        self.shown = True
        frac = min(self.done / self.total, 1.0)
        eta = elapsed / frac - elapsed if frac > 0 else float('nan')
        bar = '#' * int(frac * 30)
        sys.stderr.write(f'\r{self.desc} [{bar:<30}] {self.done}/{self.total}'
                         f' {elapsed:.0f}s elapsed, ETA {eta:.0f}s ')
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write('\n')
            sys.stderr.flush()
            self.shown = False

    def __enter__(self) -> 'Progress':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
