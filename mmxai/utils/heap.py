"""Keep freed CPU memory inside the process while a method runs many
forwards (perturbation explainers).

Why: a video model's forward allocates activations of tens to hundreds of
MiB. glibc serves blocks above its mmap threshold (32 MiB at most) with a
fresh ``mmap`` and returns them with ``munmap`` on free, and trims the heap
top once more than the trim threshold is free. Every forward then
re-faults its activations page by page: on I3D-R50 at 8x112x112, batch 8,
that is about 37,000 page faults (150 MiB of first touches) per forward,
15-20% of the forward's time (``docs/perturbation.md``). Whether a given
loop hits this depends on heap-layout accidents (Captum's ``Occlusion``
happens to avoid it, a plain loop of forwards does not).

:func:`retained_heap` turns glibc's ``mmap`` for large blocks off and
raises the trim threshold for the duration of the block, so after the
first forward or two (until freed blocks fit torch's 64-byte-aligned
requests) the forwards reuse each other's pages; on exit it restores mmap, sets the
thresholds to the values glibc's own dynamic rule reaches once a block of
32 MiB or more has been freed (mmap threshold 32 MiB, trim threshold
64 MiB: any video forward does that), and gives the free memory back to the
OS with ``malloc_trim``. The memory is released at the end, not after
every forward. The peak is not always unchanged: blocks of other sizes
(a clean pass of several views, then batches of perturbed copies) do not
always fit the freed ones, and the heap grows past them (RISE on
TSN-R50's 10 views of 8 x 224 x 224: 2.26 GB against 1.44 GB without),
so the explainers use it only under the default memory budget
(:meth:`mmxai.explainers.base.BaseExplainer.retains_heap`).

The release has a price on short runs: the next explanation faults its
pages again (16 windows of 8x64x64: occlusion 1.21x Captum's time with the
release, 0.90x without). Without it, blocks carved from the heap stay
resident after the run wherever a live allocation pins them, which a
long-running process (training with ``ExplainHook``) should not inherit.

It is a no-op off Linux/glibc, when ``MMXAI_RETAIN_HEAP=0``, and nests
(only the outermost block acts). Thread-safe.
"""
import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Iterator, Optional

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_DEFAULT_MMAP_MAX = 65536  # glibc's default
_STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX, 64-bit
_STEADY_TRIM_THRESHOLD = 2 * _STEADY_MMAP_THRESHOLD
_RUN_TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt takes: no trim

_lock = threading.Lock()
_depth = 0
_libc: Optional[ctypes.CDLL] = None
_probed = False


def _glibc() -> Optional[ctypes.CDLL]:
    """glibc's handle, or ``None`` where ``mallopt`` is not glibc's."""
    global _libc, _probed
    if _probed:
        return _libc
    _probed = True
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        libc.gnu_get_libc_version  # absent on musl
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    _libc = libc
    return libc


def heap_retention_available() -> bool:
    """Whether :func:`retained_heap` acts here (Linux, glibc, not disabled
    with ``MMXAI_RETAIN_HEAP=0``)."""
    return os.environ.get('MMXAI_RETAIN_HEAP', '1') != '0' and \
        _glibc() is not None


def _set(param: int, value: int) -> None:
    _libc.mallopt(param, value)


@contextlib.contextmanager
def retained_heap(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed CPU memory stays in the process and is
    reused (no ``munmap``/trim), then is released on exit. Yields whether
    it acted."""
    global _depth
    act = enabled and heap_retention_available()
    if act:
        with _lock:
            _depth += 1
            if _depth == 1:
                _set(_M_MMAP_MAX, 0)
                _set(_M_TRIM_THRESHOLD, _RUN_TRIM_THRESHOLD)
    try:
        yield act
    finally:
        if act:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    _set(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                    _set(_M_MMAP_THRESHOLD, _STEADY_MMAP_THRESHOLD)
                    _set(_M_TRIM_THRESHOLD, _STEADY_TRIM_THRESHOLD)
                    _libc.malloc_trim(0)
