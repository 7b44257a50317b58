"""What an explanation costs: wall time and peak memory of one call.

One implementation for ``tools/compare.py`` (per clip) and
:class:`~mmxai.engine.ExplainHook` with several explainers (per batch).
"""
import gc
import time
from typing import Any, Callable, Tuple

import torch

__all__ = ['measure']


def _status_kb(key: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return float(line.split()[1])
    raise OSError(key)


def measure(fn: Callable[[], Any], device: torch.device
            ) -> Tuple[Any, float, float]:
    """``(result, seconds, peak MiB)`` of ``fn()``.

    Seconds: ``time.perf_counter`` around the call (CUDA synchronised
    before and after). Peak: on CUDA the rise of the allocator's peak
    (``torch.cuda.reset_peak_memory_stats`` first) over the allocated
    memory before; on CPU the rise of the resident set's peak (VmHWM, reset
    to the current resident size through ``/proc/self/clear_refs``, so the
    process's own high-water mark restarts there) over the resident size
    before; NaN where neither is available. ``gc.collect()`` (and on CPU
    ``malloc_trim``) runs before, outside the timed part.
    """
    device = torch.device(device)
    gc.collect()
    cuda = device.type == 'cuda'
    ok = False
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        try:
            import ctypes
            ctypes.CDLL('libc.so.6').malloc_trim(0)
            base = _status_kb('VmRSS')
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # VmHWM := VmRSS
            ok = True
        except OSError:
            base = 0.0
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    sec = time.perf_counter() - t0
    if cuda:
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    elif ok:
        try:
            peak = (_status_kb('VmHWM') - base) / 1024
        except OSError:
            peak = float('nan')
    else:
        peak = float('nan')
    return out, sec, max(0.0, peak) if peak == peak else peak
