"""Checkpoint loading that never unpickles code from an untrusted file.

MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that refuses toolbox checkpoints (numpy values in ``meta``, ``HistoryBuffer``
objects in ``message_hub``), and the usual fix, ``weights_only=False``, lets
the file run arbitrary code. Here checkpoints load with ``weights_only=True``
and a small allowlist of plain data types (:data:`SAFE_GLOBALS`); anything
else is refused with :class:`~mmxai.errors.UntrustedCheckpointError` unless
the caller opts in with ``trust_checkpoint=True`` (CLI ``--trust-checkpoint``).
URLs are downloaded into a cache (checked: length, hash suffix, loadable;
timeout) and then take the same path. See docs/security.md.

numpy values are never built by numpy's own unpickling (its
``_reconstruct``/``ndarray.__setstate__``/``scalar`` trust the file's dtype
and bytes: a forged dtype crashes the interpreter). The allowlisted numpy
names are bound to mmxai stand-ins that accept only plain dtypes
(:data:`NUMPY_KINDS`) and exactly ``prod(shape) * itemsize`` bytes, and build
each array with ``np.frombuffer``; any other failure while reading an
untrusted file is an :class:`~mmxai.errors.InputError`.
"""
import contextlib
import hashlib
import logging
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MMLogger
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmxai.errors import (CheckpointMismatchError, InputError, MMXAIError,
                          UntrustedCheckpointError)

__all__ = ['SAFE_GLOBALS', 'load_checkpoint_file', 'load_checkpoint',
           'default_cache_dir', 'install_toolbox_loader', 'TRUST_ENV',
           'checkpoint_mismatch', 'mismatch_summary', 'DOWNLOAD_TIMEOUT_ENV',
           'DEFAULT_DOWNLOAD_TIMEOUT', 'download_timeout', 'expected_hash']

#: Environment variable that lifts the allowlist for the toolbox's own tools
#: (``tools/test.py``, ``tools/train.py``), which have no mmxai flag.
TRUST_ENV = 'MMXAI_TRUST_CHECKPOINT'

# HistoryBuffer's state names its statistics functions by `getattr(cls, name)`.
_HISTORY_BUFFER_STATS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` inside a checkpoint.

    ``HistoryBuffer.__getstate__`` pickles its statistics table as
    ``getattr(HistoryBuffer, 'mean')`` etc. The real ``getattr`` would let a
    file reach any attribute of any loaded object, so only these four
    look-ups are answered; everything else is refused like a foreign global.
    """
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATS:
        return getattr(HistoryBuffer, name)
    owner = getattr(obj, '__qualname__', type(obj).__qualname__)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL getattr({owner}.{name}) was not an '
        'allowed global')


class _ForgedValue(Exception):
    """A numpy value in a checkpoint that the safe loader will not build.

    Raised from the stand-ins below while ``torch.load`` runs (torch passes
    anything but ``UnpicklingError`` through unchanged) and turned into an
    :class:`~mmxai.errors.MMXAIError` by :func:`load_checkpoint_file`.
    ``untrusted``: a legitimate but unsafe kind (object or structured dtype);
    otherwise the value is corrupt (sizes that do not add up, bogus fields).
    """

    def __init__(self, message: str, untrusted: bool = False):
        super().__init__(message)
        self.untrusted = untrusted


#: numpy dtype kinds rebuilt from a checkpoint: bool, signed/unsigned int,
#: float, complex, bytes, str. Their items are plain bytes (no pointers, no
#: Python objects), so any byte pattern is a valid value.
NUMPY_KINDS = 'biufcSU'
_MAX_NDIM = 32
_DTYPE_SPEC = re.compile(r'[<>|=]?[A-Za-z?]{1,3}[0-9]{0,9}')


def _checked_dtype(dt: np.dtype, spec: Any) -> np.dtype:
    if dt.kind not in NUMPY_KINDS or dt.hasobject or dt.fields is not None \
            or dt.subdtype is not None or dt.metadata is not None:
        raise _ForgedValue(f'numpy dtype {spec!r} (kind {dt.kind!r}: only '
                           f'{", ".join(NUMPY_KINDS)} are rebuilt)',
                           untrusted=dt.kind in 'OVMmT' or dt.hasobject)
    if dt.itemsize <= 0:
        raise _ForgedValue(f'numpy dtype {spec!r} of item size 0')
    return dt


class _NumpyDtype:
    """Stands for ``numpy.dtype`` while a checkpoint is unpickled.

    A pickled dtype is ``dtype(spec, align, copy)`` then ``__setstate__``
    with the byte order, fields and sizes. The real ``dtype.__setstate__``
    trusts those fields (a structured dtype can hide an object field and
    then read pointers from the file's bytes). Here only a type-code string
    of a plain kind (:data:`NUMPY_KINDS`) is accepted and the state may only
    set the byte order; the real dtype is made from the spec.
    """
    __slots__ = ('_mmxai_dtype', )

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = True,
                 *extra: Any):
        if extra or type(spec) is not str or not _DTYPE_SPEC.fullmatch(spec) \
                or type(align) is not bool or type(copy) is not bool:
            raise _ForgedValue(f'numpy dtype{(spec, align, copy) + extra!r}',
                               untrusted=type(spec) is not str)
        try:
            dt = np.dtype(spec)
        except (TypeError, ValueError):
            raise _ForgedValue(f'numpy dtype {spec!r}') from None
        self._mmxai_dtype = _checked_dtype(dt, spec)

    def __setstate__(self, state: Any) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment,
        # flags[, metadata]); only the byte order is taken from the file.
        dt = self._mmxai_dtype
        ok = (type(state) is tuple and len(state) in (8, 9)
              and state[0] in (3, 4) and type(state[0]) is int
              and state[1] in ('<', '>', '|', '=') and type(state[1]) is str)
        if not ok:
            raise _ForgedValue(f'numpy dtype {dt.str!r} with state '
                               f'{_short(state)}')
        if state[2:5] != (None, None, None) or (len(state) == 9 and
                                                state[8] is not None):
            raise _ForgedValue(f'numpy dtype {dt.str!r} with fields, '
                               'sub-arrays or metadata', untrusted=True)
        if state[5] not in (-1, dt.itemsize) or type(state[5]) is not int:
            raise _ForgedValue(f'numpy dtype {dt.str!r} with item size '
                               f'{_short(state[5])}')
        if state[1] in '<>' and dt.byteorder != '|':
            self._mmxai_dtype = dt.newbyteorder(state[1])


class _NdarrayType:
    """Stands for the ``numpy.ndarray`` class (the first argument of
    ``_reconstruct``); the real class would let a file call
    ``ndarray(shape, dtype, buffer, offset, strides)``."""
    __slots__ = ()

    def __repr__(self) -> str:
        return 'numpy.ndarray'


_NDARRAY = _NdarrayType()


class _NumpyArray:
    """What ``_reconstruct`` returns; its ``__setstate__`` (the pickle's
    BUILD) builds the array with :func:`_build_array` and
    :func:`_resolve_numpy` swaps it in after loading."""
    __slots__ = ('_mmxai_array', )

    def __init__(self):
        self._mmxai_array = None

    def __setstate__(self, state: Any) -> None:
        if self._mmxai_array is not None:
            raise _ForgedValue('numpy array built twice')
        if type(state) is tuple and len(state) == 5 and state[0] == 1 \
                and type(state[0]) is int:
            state = state[1:]
        if type(state) is not tuple or len(state) != 4:
            raise _ForgedValue(f'numpy array state {_short(state)}')
        shape, dtype, fortran, raw = state
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise _ForgedValue(f'numpy array order {_short(fortran)}')
        self._mmxai_array = _build_array(raw, dtype, shape,
                                         'F' if fortran else 'C')


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _dtype_of(dtype: Any) -> np.dtype:
    if type(dtype) is not _NumpyDtype:
        raise _ForgedValue(f'numpy dtype given as {type(dtype).__name__}')
    return dtype._mmxai_dtype


def _build_array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """A fresh array from checked pieces: dtype of a plain kind, a shape of
    non-negative ints, exactly ``prod(shape) * itemsize`` bytes."""
    dt = _dtype_of(dtype)
    if type(shape) is int:
        shape = (shape, )
    if type(shape) not in (tuple, list) or len(shape) > _MAX_NDIM or any(
            type(d) is not int or d < 0 for d in shape):
        raise _ForgedValue(f'numpy array of shape {_short(shape)}')
    if order not in ('C', 'F') or type(order) is not str:
        raise _ForgedValue(f'numpy array order {_short(order)}')
    if type(raw) not in (bytes, bytearray):
        raise _ForgedValue(f'numpy array data of type {type(raw).__name__}',
                           untrusted=type(raw) is list)
    count = 1
    for d in shape:
        count *= d
    if len(raw) != count * dt.itemsize:
        raise _ForgedValue(
            f'numpy array of shape {_short(tuple(shape))} and dtype {dt.str} '
            f'needs {count * dt.itemsize} bytes, the file has {len(raw)}')
    flat = np.frombuffer(raw, dtype=dt, count=count)
    return flat.reshape(tuple(shape), order=order).copy(order='K')


def _safe_reconstruct(subtype: Any = None, *args: Any) -> _NumpyArray:
    """Stands for ``numpy.core.multiarray._reconstruct`` (plain arrays only;
    the placeholder shape and dtype arguments are not used)."""
    if subtype is not _NDARRAY:
        raise _ForgedValue(f'numpy array of class {_short(subtype)}',
                           untrusted=True)
    return _NumpyArray()


def _safe_scalar(dtype: Any = None, raw: Any = None, *extra: Any) -> Any:
    """Stands for ``numpy.core.multiarray.scalar``: one item of a plain
    dtype from exactly ``itemsize`` bytes."""
    dt = _dtype_of(dtype)
    if extra or type(raw) is not bytes or len(raw) != dt.itemsize:
        raise _ForgedValue(f'numpy {dt.str} scalar from {_short(raw)}')
    return np.frombuffer(raw, dtype=dt, count=1)[0]


def _safe_frombuffer(buf: Any = None, dtype: Any = None, shape: Any = None,
                     order: Any = 'C', *extra: Any) -> np.ndarray:
    """Stands for ``numpy.core.numeric._frombuffer`` (pickle protocol 5)."""
    if extra:
        raise _ForgedValue('numpy _frombuffer with extra arguments')
    return _build_array(buf, dtype, shape, order)


def _safe_bytes(*args: Any) -> bytes:
    """Stands for ``builtins.bytes``: pickle protocol 2 writes ``b''`` (the
    data of an empty numpy array) as ``bytes()``; nothing else is made
    (``bytes(n)`` would allocate what the file asks)."""
    if args:
        raise _ForgedValue(f'bytes{_short(args)}')
    return b''


class _ScalarType:
    """Stands for a numpy scalar type stored as a value (e.g. a
    ``dtype=np.float32`` setting); calling it converts one plain Python
    number, string or bytes, as ``np.float32(0.5)`` does."""
    __slots__ = ('_mmxai_type', )

    def __init__(self, t: type):
        self._mmxai_type = t

    def __call__(self, *args: Any) -> Any:
        if len(args) > 1 or any(
                type(a) not in (bool, int, float, complex, str, bytes)
                for a in args):
            raise _ForgedValue(f'{self._mmxai_type.__name__}'
                               f'{_short(args)}')
        return self._mmxai_type(*args)

    def __repr__(self) -> str:
        return f'numpy.{self._mmxai_type.__name__}'


_SCALAR_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                 np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                 np.float64, np.complex64, np.complex128, np.str_, np.bytes_)
_SCALAR_STANDINS = {t: _ScalarType(t) for t in _SCALAR_TYPES}


def _numpy_entries() -> List[Tuple[Any, str, str]]:
    """numpy's pickle names, each bound to an mmxai stand-in that checks
    what it is given (the real functions trust the file's dtype and bytes:
    a forged one crashes the interpreter)."""
    mods = ('numpy.core', 'numpy._core')  # numpy 1.x and 2.x pickle names
    rows = []
    for mod in mods:
        rows += [
            (_safe_reconstruct, f'{mod}.multiarray._reconstruct',
             'stand-in: a placeholder whose __setstate__ builds a plain '
             'array with np.frombuffer from checked dtype, shape and bytes'),
            (_safe_scalar, f'{mod}.multiarray.scalar',
             'stand-in: a numpy scalar of a plain dtype from itemsize bytes'),
            (_safe_frombuffer, f'{mod}.numeric._frombuffer',
             'stand-in: checked array from a bytes buffer (protocol >= 5)'),
        ]
    rows += [
        (_NDARRAY, 'numpy.ndarray',
         'stand-in for the class: only accepted by _reconstruct'),
        (_NumpyDtype, 'numpy.dtype',
         'stand-in: a dtype from a type-code string of a plain kind '
         f'({NUMPY_KINDS}); its state may only set the byte order'),
        (_safe_bytes, 'builtins.bytes',
         "stand-in: only bytes() == b'', how protocol 2 pickles the data of "
         'an empty array'),
        (_NumpyArray, 'mmxai.checkpoint._NumpyArray',
         "(internal) what _reconstruct returns; listed so that the pickle's "
         'BUILD reaches its checking __setstate__'),
    ]
    for t, standin in _SCALAR_STANDINS.items():
        names = {f'numpy.{t.__name__}'}
        if t is np.bool_:
            names |= {'numpy.bool_', 'numpy.bool'}  # numpy 1.x / 2.x name
        for n in sorted(names):
            rows.append((standin, n, 'stand-in for a numpy scalar type: '
                         'converts one plain number/str/bytes'))
    return rows


def _resolve_numpy(obj: Any) -> Any:
    """Swap the stand-ins in a loaded checkpoint for real numpy values."""
    done: dict = {}

    def walk(x: Any) -> Any:
        t = type(x)
        if t is _NumpyArray:
            if x._mmxai_array is None:
                raise _ForgedValue('numpy array without data')
            return x._mmxai_array
        if t is _NumpyDtype:
            return x._mmxai_dtype
        if t is _ScalarType:
            return x._mmxai_type
        if x is _NDARRAY:
            return np.ndarray
        if x is _NumpyDtype:
            return np.dtype
        if t in (str, bytes, int, float, bool, type(None), complex):
            return x
        key = id(x)
        if key in done:
            return done[key]
        if isinstance(x, dict):
            done[key] = x
            items = [(walk(k), walk(v)) for k, v in list(x.items())]
            if any(a is not b for (a, _), b in zip(items, list(x))):
                x.clear()
            for k, v in items:
                x[k] = v
        elif t is list:
            done[key] = x
            x[:] = [walk(v) for v in x]
        elif t in (tuple, set, frozenset):
            done[key] = x
            new = [walk(v) for v in x]
            if any(a is not b for a, b in zip(new, x)):
                done[key] = t(new)
        if isinstance(x, (dict, HistoryBuffer, torch.Tensor)) and \
                getattr(x, '__dict__', None):
            done[key] = x
            walk(x.__dict__)
        return done.get(key, x)

    return walk(obj)


def _build_safe_globals() -> List[Tuple[Any, str, str]]:
    rows = _numpy_entries()
    rows += [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer',
         "MMEngine's log history in message_hub: numpy arrays + counters; "
         'its __setstate__ only updates __dict__ and its statistics table'),
        (_history_buffer_getattr, 'builtins.getattr',
         'restricted: only getattr(HistoryBuffer, min|max|current|mean), '
         "how HistoryBuffer pickles its statistics table"),
    ]
    return rows


# (object, name it is pickled under, why it is harmless). torch's own
# defaults already cover tensors, storages, OrderedDict, Counter, set,
# bytes (_codecs.encode), torch.Size/device/dtype.
SAFE_GLOBALS_DOC: List[Tuple[Any, str, str]] = _build_safe_globals()
#: Allowlist for ``torch.serialization.safe_globals``: ``(object, name)``.
SAFE_GLOBALS: List[Tuple[Any, str]] = [(o, n) for o, n, _ in SAFE_GLOBALS_DOC]

_REFUSED_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
    re.compile(r'unrecognized function (.+?)(?: which belongs to|$)', re.M),
    re.compile(r'classes allowlisted via `add_safe_globals` but got (.+)$',
               re.M),
    re.compile(r'types allowlisted via `add_safe_globals`, but got (.+)$',
               re.M),
    re.compile(r'(Unsupported operand \S+)'),
)


def _torch_version() -> Tuple[int, int]:
    m = re.match(r'(\d+)\.(\d+)', torch.__version__)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@contextlib.contextmanager
def _allowlisted() -> Iterator[None]:
    """Allow :data:`SAFE_GLOBALS` for weights-only loads inside the block."""
    ser = torch.serialization
    # `(object, name)` entries are understood from torch 2.6 on; before that
    # only plain objects (keyed by their own module.qualname) are.
    entries: list = list(SAFE_GLOBALS) if _torch_version() >= (2, 6) else [
        o for o, n in SAFE_GLOBALS
        if n == f'{o.__module__}.{getattr(o, "__qualname__", "")}']
    if hasattr(ser, 'safe_globals'):  # torch >= 2.5
        with ser.safe_globals(entries):
            yield
    elif hasattr(ser, 'add_safe_globals'):  # torch 2.4: process-wide list
        can_restore = hasattr(ser, 'get_safe_globals') and hasattr(
            ser, 'clear_safe_globals')
        before = list(ser.get_safe_globals()) if can_restore else None
        ser.add_safe_globals(entries)
        try:
            yield
        finally:
            if can_restore:
                ser.clear_safe_globals()
                ser.add_safe_globals(before)
    else:  # torch < 2.4: weights-only loads accept torch's defaults only
        yield


@contextlib.contextmanager
def _history_buffer_registry_kept() -> Iterator[None]:
    """Undo what loaded HistoryBuffers write into the class-wide stats table."""
    table = HistoryBuffer._statistics_methods
    saved = dict(table)
    try:
        yield
    finally:
        table.clear()
        table.update(saved)


def default_cache_dir() -> str:
    """Download folder: ``$MMXAI_CACHE/checkpoints`` or
    ``~/.cache/mmxai/checkpoints``."""
    root = os.environ.get('MMXAI_CACHE') or osp.join('~', '.cache', 'mmxai')
    return osp.join(osp.expanduser(root), 'checkpoints')


def _is_url(filename: str) -> bool:
    return urlparse(str(filename)).scheme in ('http', 'https')


#: Seconds without data after which a download gives up (env override).
DOWNLOAD_TIMEOUT_ENV = 'MMXAI_DOWNLOAD_TIMEOUT'
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
# The model zoo's (and torch.hub's) name rule: `..._20220812-8e1f2148.pth`,
# the hex after the last '-' starts the file's SHA256. All-digit suffixes are
# taken for dates (`model-20220812.pth`), not hashes.
_HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})\.[^-]*$')


def download_timeout() -> float:
    """:data:`DEFAULT_DOWNLOAD_TIMEOUT`, or ``$MMXAI_DOWNLOAD_TIMEOUT``."""
    raw = os.environ.get(DOWNLOAD_TIMEOUT_ENV, '').strip()
    if not raw:
        return DEFAULT_DOWNLOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float('inf'):
        raise InputError(f'{DOWNLOAD_TIMEOUT_ENV}={raw!r} is not a number of '
                         f'seconds; set e.g. {DOWNLOAD_TIMEOUT_ENV}=120')
    return value


def expected_hash(filename: str) -> Optional[str]:
    """The SHA256 prefix a model-zoo file name carries, or None."""
    m = _HASH_SUFFIX.search(osp.basename(filename))
    return m.group(1) if m and not m.group(1).isdigit() else None


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _cache_path(url: str, cache_dir: Optional[str]) -> str:
    base = osp.basename(urlparse(url).path) or 'checkpoint.pth'
    key = hashlib.sha256(url.encode()).hexdigest()[:12]
    return osp.join(cache_dir or default_cache_dir(), key, base)


def _fetch(url: str, folder: str) -> Tuple[str, str]:
    """Download ``url`` into a hidden temp file in ``folder``; checks the
    received length against Content-Length. Returns ``(path, content
    type)``; the temp file is removed on any failure."""
    import http.client
    import socket
    import urllib.error
    import urllib.request
    timeout = download_timeout()
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.download-',
                                   suffix='.part')
    except OSError as e:
        raise InputError(f'cannot write the checkpoint cache {folder!r} '
                         f'({e.strerror or e}); set MMXAI_CACHE to a '
                         'writable folder') from None
    nothing = 'nothing was cached'
    try:
        with os.fdopen(fd, 'wb') as out:
            req = urllib.request.Request(url, headers={'User-Agent': 'mmxai'})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                ctype = resp.headers.get('Content-Type', '') or ''
                length = resp.headers.get('Content-Length')
                got = 0
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    got += len(chunk)
        if length is not None and length.strip().isdigit() and \
                got != int(length):
            raise InputError(f'download of {url!r} stopped after {got} of '
                             f'{int(length)} bytes; {nothing}: try again')
        return tmp, ctype
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, MMXAIError):
            raise
        reason = getattr(e, 'reason', None) or e
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise InputError(
                f'no data from {url!r} for {timeout:g} s, gave up; {nothing} '
                f'(wait longer with {DOWNLOAD_TIMEOUT_ENV}=<seconds>)'
            ) from None
        if isinstance(e, http.client.IncompleteRead):
            raise InputError(f'download of {url!r} stopped after '
                             f'{len(e.partial)} bytes ({e.expected} more '
                             f'expected); {nothing}: try again') from None
        if isinstance(e, (OSError, http.client.HTTPException)):
            raise InputError(f'cannot download checkpoint {url!r}: '
                             f'{_first_line(reason)}; {nothing}') from None
        raise


def _load_url(url: str, map_location: Any, trust_checkpoint: bool,
              cache_dir: Optional[str]) -> Any:
    """Load a URL through the cache: a cached copy is used when its name's
    hash (if any) still matches; a download goes to a temp file and enters
    the cache only when complete, of the named hash and loadable."""
    dst = _cache_path(url, cache_dir)
    want = expected_hash(dst)
    if osp.isfile(dst):
        if want is None or _sha256(dst).startswith(want):
            try:
                return _load_path(dst, url, map_location, trust_checkpoint)
            except UntrustedCheckpointError:
                raise
            except InputError as e:
                raise InputError(
                    f'{e} (cached copy {dst!r}: delete it to download '
                    'again)') from None
        MMLogger.get_current_instance().warning(
            f'cached checkpoint {dst} does not have the SHA256 {want}... its '
            f'name promises (replaced or damaged); downloading {url} again')
        with contextlib.suppress(OSError):
            os.remove(dst)
    tmp, ctype = _fetch(url, osp.dirname(dst))
    try:
        if want is not None:
            got = _sha256(tmp)
            if not got.startswith(want):
                raise InputError(
                    f'download of {url!r} has SHA256 {got[:len(want)]}..., '
                    f'not {want}... as its name says (wrong or tampered '
                    'file); nothing was cached')
        try:
            result = _load_path(tmp, url, map_location, trust_checkpoint)
        except InputError as e:
            page = (f'; the server sent {ctype.split(";")[0]}'
                    if ctype.startswith('text/') else '')
            raise type(e)(f'{e}{page}; nothing was cached') from None
        os.replace(tmp, dst)
        return result
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _looks_like_checkpoint(path: str) -> bool:
    """Zip archive (torch >= 1.6) or a pickle (legacy torch.save format)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x80'  # pickle PROTO opcode


def _refused_type(message: str) -> Optional[str]:
    for pattern in _REFUSED_PATTERNS:
        m = pattern.search(message)
        if m:
            return m.group(1).strip()
    return None


def load_checkpoint_file(filename: str,
                         map_location: Any = 'cpu',
                         trust_checkpoint: bool = False,
                         cache_dir: Optional[str] = None) -> Any:
    """Read a checkpoint (local path or http(s) URL) without running its code.

    Args:
        filename: path or ``http(s)://`` URL. A URL is downloaded into
            :func:`default_cache_dir` through a temp file that enters the
            cache only when complete (Content-Length), of the SHA256 its
            name's ``-<hex>`` suffix names (model-zoo rule, checked on cache
            hits too: a replaced entry is downloaded again) and loadable;
            the download gives up after :func:`download_timeout` seconds
            without data.
        map_location: as for ``torch.load``.
        trust_checkpoint: unpickle everything (``weights_only=False``); only
            for files from a trusted source.
        cache_dir: download folder for URLs.

    Returns:
        What the file holds: usually a dict with ``state_dict`` and ``meta``,
        or a bare state dict.

    Raises:
        UntrustedCheckpointError: the file needs a type outside
            :data:`SAFE_GLOBALS` and ``trust_checkpoint`` is False.
        InputError: missing, unreadable or corrupt file; failed download.
    """
    filename = os.fspath(filename)
    if _is_url(filename):
        return _load_url(filename, map_location, trust_checkpoint, cache_dir)
    return _load_path(filename, filename, map_location, trust_checkpoint)


def _load_path(path: str, filename: str, map_location: Any,
               trust_checkpoint: bool) -> Any:
    """Load the file ``path`` (named ``filename`` in messages)."""
    if not osp.isfile(path):
        raise InputError(f'checkpoint file not found: {filename!r}')
    try:
        if not _looks_like_checkpoint(path):
            raise InputError(f'{filename!r} is not a PyTorch checkpoint')
    except OSError as e:
        raise InputError(f'cannot read checkpoint {filename!r}: {e}') from None
    if trust_checkpoint:
        try:
            return torch.load(path, map_location=map_location,
                              weights_only=False)
        except (EOFError, RuntimeError, pickle.UnpicklingError) as e:
            raise InputError(f'{filename!r} is not a PyTorch checkpoint '
                             f'({_first_line(e)})') from None
    try:
        with _history_buffer_registry_kept(), _allowlisted():
            return _resolve_numpy(torch.load(path, map_location=map_location,
                                             weights_only=True))
    except pickle.UnpicklingError as e:
        offending = _refused_type(str(e))
        if offending is None:
            raise InputError(f'{filename!r} is not a PyTorch checkpoint '
                             f'({_first_line(e)})') from None
        opcode = re.fullmatch(r'Unsupported operand (\S+)', offending)
        if opcode:  # garbage, or a pickle torch.save does not write
            raise InputError(
                f'{filename!r} is not a PyTorch checkpoint (pickle opcode '
                f'{opcode.group(1)}, which torch.save does not write; only if '
                'you trust its source: --trust-checkpoint reads any pickle)'
            ) from None
        raise UntrustedCheckpointError(_untrusted_message(
            filename, f'needs {offending!r} to load, which is not on '
            "mmxai's allowlist of data types")) from None
    except _ForgedValue as e:
        if e.untrusted:
            raise UntrustedCheckpointError(_untrusted_message(
                filename, f'holds a {_first_line(e)}, which mmxai\'s safe '
                'loader does not rebuild')) from None
        raise InputError(f'{filename!r} is not a PyTorch checkpoint (corrupt '
                         f'or forged: {_first_line(e)})') from None
    except RecursionError:
        raise InputError(f'{filename!r} is not a PyTorch checkpoint (nested '
                         'too deeply)') from None
    except (EOFError, RuntimeError) as e:
        raise InputError(f'{filename!r} is not a PyTorch checkpoint '
                         f'({_first_line(e)})') from None
    except Exception as e:  # noqa: B902 untrusted bytes: any failure is
        # a corrupt file (struct.error, KeyError, MemoryError, ...)
        raise InputError(f'{filename!r} is not a PyTorch checkpoint '
                         f'({type(e).__name__}: {_first_line(e)})') from None


def _untrusted_message(filename: str, what: str) -> str:
    hint = ('' if _torch_version() >= (2, 4) else
            ' (torch < 2.4 cannot allowlist types: upgrade torch)')
    return (f'checkpoint {filename!r} {what}{hint}; load it only if you '
            'trust its source: --trust-checkpoint (CLI), '
            f'trust_checkpoint=True (API) or {TRUST_ENV}=1 (the toolbox\'s '
            'tools)')


def _revised(key: str, revise_keys: Sequence[Tuple[str, str]]) -> str:
    for pattern, repl in revise_keys:
        key = re.sub(pattern, repl, key)
    return key


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def checkpoint_mismatch(model: nn.Module, state: dict,
                        revise_keys: Sequence[Tuple[str, str]] = (
                            (r'^module\.', ''), )) -> dict:
    """What of ``model`` a state dict would leave unloaded.

    Returns ``dict(missing=[...], unexpected=[...], shapes=[(key, ckpt
    shape, model shape)])`` after renaming keys by ``revise_keys``.
    """
    keys = {_revised(k, revise_keys): v for k, v in state.items()}
    own = model.state_dict()
    shapes = [(k, tuple(keys[k].shape), tuple(v.shape))
              for k, v in own.items() if k in keys and
              hasattr(keys[k], 'shape') and tuple(keys[k].shape) !=
              tuple(v.shape)]
    return dict(missing=[k for k in own if k not in keys],
                unexpected=[k for k in keys if k not in own], shapes=shapes)


def mismatch_summary(m: dict) -> str:
    """``'3 of the model's weights missing (backbone.x, ...), 1 of another
    shape (cls_head.fc_cls.weight: [400, 2048] in the file, [4, 2048] in the
    model)'``."""
    parts = []
    if m['missing']:
        parts.append(f"{len(m['missing'])} of the model's weights missing "
                     f"({', '.join(m['missing'][:3])}"
                     f"{', ...' if len(m['missing']) > 3 else ''})")
    if m['shapes']:
        k, a, b = m['shapes'][0]
        parts.append(f"{len(m['shapes'])} of another shape ({k}: {list(a)} "
                     f"in the file, {list(b)} in the model"
                     f"{', ...' if len(m['shapes']) > 1 else ''})")
    if m['unexpected']:
        parts.append(f"{len(m['unexpected'])} not in the model")
    return ', '.join(parts)


def load_checkpoint(model: nn.Module,
                    filename: str,
                    map_location: Any = 'cpu',
                    strict: bool = False,
                    trust_checkpoint: bool = False,
                    revise_keys: Sequence[Tuple[str, str]] = (
                        (r'^module\.', ''), ),
                    logger: Optional[logging.Logger] = None,
                    allow_partial: bool = False) -> dict:
    """Load a checkpoint's weights into ``model`` (MMEngine semantics).

    Takes ``checkpoint['state_dict']`` (or the file itself when it is a bare
    state dict), renames keys by ``revise_keys`` (regex, replacement) and
    loads them with MMEngine's ``load_state_dict``. A checkpoint that would
    leave weights of the model unloaded (missing keys, other shapes: the
    checkpoint of another model) is refused unless ``allow_partial``; then
    the loadable part is loaded, a warning logged and the summary kept in
    ``model.mmxai_checkpoint_warning`` (written into every output's JSON).
    Keys only in the file are logged. Copies ``meta['dataset_meta']`` to
    ``model.dataset_meta`` when present.

    Returns:
        The checkpoint dict.
    Raises:
        CheckpointMismatchError: the checkpoint does not fit the model.
    """
    checkpoint = load_checkpoint_file(filename, map_location,
                                      trust_checkpoint=trust_checkpoint)
    if not isinstance(checkpoint, dict):
        raise InputError(f'checkpoint {filename!r} holds a '
                         f'{type(checkpoint).__name__}, not a state dict')
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict):
        raise InputError(f'checkpoint {filename!r}: state_dict is a '
                         f'{type(state).__name__}, not a dict')
    if not isinstance(state, OrderedDict):  # _load_checkpoint_to_model needs
        state = OrderedDict(state)         # an object that takes _metadata
        checkpoint = {**checkpoint, 'state_dict': state} \
            if 'state_dict' in checkpoint else state
    logger = logger or MMLogger.get_current_instance()
    mismatch = checkpoint_mismatch(model, state, revise_keys)
    partial = mismatch['missing'] or mismatch['shapes']
    if partial and not allow_partial:
        raise CheckpointMismatchError(
            f'checkpoint {filename!r} does not fit the model: '
            f'{mismatch_summary(mismatch)}; is it the checkpoint of this '
            'config? Load the rest anyway with --allow-partial-checkpoint '
            '(CLI) or allow_partial_checkpoint=True (API)')
    if mismatch['shapes']:  # load what fits; MMEngine would raise on these
        bad = {k for k, _, _ in mismatch['shapes']}
        state = OrderedDict((k, v) for k, v in state.items()
                            if _revised(k, revise_keys) not in bad)
        checkpoint = {**checkpoint, 'state_dict': state} \
            if 'state_dict' in checkpoint else state
    if partial:
        model.mmxai_checkpoint_warning = (
            f'partial checkpoint {osp.basename(str(filename))}: '
            f'{mismatch_summary(mismatch)}; those weights are random')
        logger.warning(model.mmxai_checkpoint_warning)
    _load_checkpoint_to_model(model, checkpoint, strict, logger,
                              [tuple(r) for r in revise_keys])
    meta = checkpoint.get('meta') if 'state_dict' in checkpoint else None
    if isinstance(meta, dict) and meta.get('dataset_meta') is not None:
        model.dataset_meta = meta['dataset_meta']
    return checkpoint


def _toolbox_trusts() -> bool:
    return os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true',
                                                             'yes')


def load_from_mmxai_local(filename: str, map_location: Any = None) -> Any:
    """MMEngine ``CheckpointLoader`` scheme for local files: mmxai's safe
    loading (allowlist; ``MMXAI_TRUST_CHECKPOINT=1`` lifts it)."""
    return load_checkpoint_file(filename, map_location or 'cpu',
                                trust_checkpoint=_toolbox_trusts())


def load_from_mmxai_http(filename: str, map_location: Any = None) -> Any:
    """The same for ``http(s)://`` (downloaded into mmxai's cache)."""
    return load_checkpoint_file(filename, map_location or 'cpu',
                                trust_checkpoint=_toolbox_trusts())


def install_toolbox_loader() -> None:
    """Route MMEngine's checkpoint loading (``Runner.load_checkpoint``,
    ``load_from``, ``resume``, MMAction2's ``tools/test.py``) for local files
    and http(s) URLs through :func:`load_checkpoint_file`.

    Called on ``import mmxai`` (e.g. by ``custom_imports=['mmxai']``): a
    Runner-saved or model-zoo checkpoint then loads under torch >= 2.6
    without ``weights_only=False``, and one that needs other types is
    refused with the opt-in named. Idempotent.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_mmxai_local,
                                     force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=load_from_mmxai_http, force=True)
