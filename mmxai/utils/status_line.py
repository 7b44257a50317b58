"""A throttled one-line status on stderr for the long runs of the APIs
(windows of a long video, frames of a feature cache).

``label done/total (pct%) [F frames/s] R unit/s ETA XmYYs``: redrawn in
place at most every 0.5 s on a terminal, printed as a new line at most
every 10 s otherwise (logs stay short), always at the end (``force``).
"""
import math
import sys
import time
from typing import Optional, TextIO

__all__ = ['StatusLine']


class StatusLine:
    """Progress of ``total`` items called ``unit`` (e.g. windows).

    Args:
        total: items in the run (nothing is shown when 0).
        label: the line's first word (e.g. ``'windows'``, ``'features'``).
        unit: the items' name in the rate (``R unit/s``).
        enabled: ``False`` shows nothing.
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(self, total: int, label: str, unit: str,
                 enabled: bool = True,
                 stream: Optional[TextIO] = None) -> None:
        self.total, self.label, self.unit = int(total), label, unit
        self.enabled = bool(enabled) and self.total > 0
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = 0.0
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()

    def update(self, done: int, frames: Optional[int] = None,
               skipped: int = 0, force: bool = False) -> None:
        """Show ``done`` of ``total`` (``skipped`` of them came for free,
        e.g. resumed, and do not count in the rate); ``frames``: video
        frames decoded so far, shown as a frame rate."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        el = max(now - self.start, 1e-6)
        rate = (done - skipped) / el
        left = (self.total - done) / rate if rate > 0 else float('nan')
        eta = f'{left // 60:.0f}m{left % 60:02.0f}s' \
            if math.isfinite(left) else '?'
        pct = 100.0 * done / self.total
        fps = '' if frames is None else f'{frames / el:.1f} frames/s '
        line = (f'{self.label} {done}/{self.total} ({pct:.0f}%) {fps}'
                f'{rate:.2f} {self.unit}/s ETA {eta}')
        end = '\r' if self.tty and done < self.total else '\n'
        print(line, end=end, file=self.stream, flush=True)
