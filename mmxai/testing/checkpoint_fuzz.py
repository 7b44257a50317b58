"""Crafted and mutated checkpoints for the safe loader's tests.

:func:`crafted_checkpoint` writes a checkpoint whose ``meta`` holds a forged
numpy value (the kinds that crash numpy's own unpickling: structured dtypes
hiding an object field, object arrays from raw bytes, shapes larger than the
data, bogus item sizes, ...). :func:`mutated_pickles` yields seeded byte
mutations of a checkpoint's ``data.pkl``. Run as a module, it loads files
with :func:`mmxai.checkpoint.load_checkpoint_file` in this one process and
prints one line per file; a crash (segfault) shows as the process's exit
status, which is why the tests run it in a subprocess::

    python -m mmxai.testing.checkpoint_fuzz load FILE...
    python -m mmxai.testing.checkpoint_fuzz fuzz CKPT --count 200 --seed 0
"""
import argparse
import io
import os
import os.path as osp
import random
import sys
import tempfile
import zipfile
from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core import multiarray as _ma
    from numpy._core import numeric as _nm
except ImportError:  # numpy < 1.26
    from numpy.core import multiarray as _ma  # type: ignore
    from numpy.core import numeric as _nm  # type: ignore

__all__ = ['CRAFTED', 'use_numpy_values', 'crafted_checkpoint', 'pickle_member',
           'replace_member', 'mutated_pickles', 'main']


class _Reduce:
    """Pickles as ``fn(*args)`` (then ``__setstate__(state)``), whatever
    ``fn`` is: how a crafted file names numpy's reconstructors."""

    def __init__(self, fn: Any, args: tuple, state: Any = None):
        self.value = (fn, args) if state is None else (fn, args, state)

    def __reduce__(self):
        return self.value


def _dtype(spec: str, state: tuple) -> _Reduce:
    return _Reduce(np.dtype, (spec, False, True), state)


def _array(shape: Any, dtype: Any, raw: Any, version: int = 1) -> _Reduce:
    return _Reduce(_ma._reconstruct, (np.ndarray, (0, ), b'b'),
                   (version, shape, dtype, False, raw))


# A void dtype whose state adds an object field but not the object flag:
# numpy then reads pointers from the file's bytes.
_HIDDEN_OBJECT = (3, '|', None, ('a', ), {'a': (np.dtype('O'), 0)}, 8, 1, 0)
_F8 = (3, '<', None, None, None, -1, -1, 0)


def _crafted() -> Dict[str, Any]:
    cases = {
        'hidden_object_field_array':
        _array((2, ), _dtype('V8', _HIDDEN_OBJECT), b'A' * 16),
        'hidden_object_field_scalar':
        _Reduce(_ma.scalar, (_dtype('V8', _HIDDEN_OBJECT), b'A' * 8)),
        'object_array_from_bytes':
        _array((4, ), _dtype('O', (3, '|', None, None, None, -1, -1, 63)),
               b'A' * 32),
        'object_scalar':
        _Reduce(_ma.scalar, (_dtype('O', (3, '|', None, None, None, -1, -1,
                                          63)), b'A' * 8)),
        'shape_larger_than_buffer':
        _array((1000000, ), _dtype('f8', _F8), b'A' * 32),
        'negative_shape':
        _array((-1, ), _dtype('f8', _F8), b''),
        'huge_shape':
        _array((1 << 62, 1 << 62), _dtype('f8', _F8), b'A' * 8),
        'bogus_itemsize_void':
        _array((2, ), _dtype('V8', (3, '|', None, None, None, 1 << 40, 1, 0)),
               b'A' * 16),
        'bogus_itemsize_float':
        _array((2, ), _dtype('f8', (3, '<', None, None, None, 1 << 20, 1, 0)),
               b'A' * 16),
        'subarray_dtype':
        _array((1, ), _dtype('V16', (3, '|', (np.dtype('O'), (2, )), None,
                                     None, 16, 8, 63)), b'A' * 16),
        'frombuffer_object':
        _Reduce(_nm._frombuffer, (b'A' * 16, _dtype('O', (3, '|', None, None,
                                                          None, -1, -1, 63)),
                                  (2, ), 'C')),
        'ndarray_with_buffer':
        _Reduce(np.ndarray, ((1 << 20, ), _dtype('f8', _F8), b'A' * 8, 0,
                             (8, ))),
        'dtype_from_list':
        _Reduce(np.dtype, ([('a', 'O')], False, True)),
        'scalar_short_bytes':
        _Reduce(_ma.scalar, (_dtype('f8', _F8), b'A')),
        'array_data_not_bytes':
        _array((2, ), _dtype('f8', _F8), [1, 2]),
    }
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None and hasattr(dtypes, 'StringDType'):
        # numpy 2's variable-width strings hold pointers in their items.
        cases['string_dtype_array'] = _array(
            (2, ), _Reduce(dtypes.StringDType, ()), b'A' * 32)
    return cases


#: Names of the crafted cases :func:`crafted_checkpoint` writes.
CRAFTED = tuple(sorted(_crafted()))


def crafted_checkpoint(path: str, case: str, legacy: bool = False) -> str:
    """Write a small checkpoint (``state_dict`` + ``meta``) whose ``meta``
    holds the forged value ``case`` (one of :data:`CRAFTED`); ``legacy``:
    torch's pre-1.6 pickle format instead of the zip."""
    value = _crafted()[case]
    torch.save(dict(state_dict={'w': torch.ones(2)}, meta=dict(x=value)),
               path, _use_new_zipfile_serialization=not legacy)
    return path


def pickle_member(path: str) -> Tuple[str, bytes]:
    """``(name, bytes)`` of the pickle (``.../data.pkl``) in a zip
    checkpoint."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith('data.pkl'))
        return name, z.read(name)


def replace_member(path: str, name: str, data: bytes, dst: str) -> str:
    """Copy the zip checkpoint ``path`` to ``dst`` with member ``name``
    replaced by ``data`` (CRCs right, so the loader reads it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as zi, \
            zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename,
                        data if info.filename == name else
                        zi.read(info.filename))
    with open(dst, 'wb') as f:
        f.write(buf.getvalue())
    return dst


_INTERESTING = (0, 1, 0x7f, 0x80, 0xff, ord('V'), ord('O'), ord('R'),
                ord('b'), ord('q'), ord('h'), ord('('), ord('t'), ord('J'))


def mutated_pickles(data: bytes, count: int,
                    seed: int = 0) -> Iterator[Tuple[str, bytes]]:
    """``count`` seeded mutations of a pickle: ``(description, bytes)``.

    Byte flips, random or "interesting" bytes (opcodes, type codes, 0/255),
    small insertions/deletions and copied spans; half of them aim at the
    numpy parts (after a ``numpy`` global), where the reconstructors read.
    """
    rng = random.Random(seed)
    hot = [i for i in range(len(data)) if data.startswith(b'numpy', i)]
    for k in range(count):
        buf = bytearray(data)
        how = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if hot and rng.random() < 0.5:
                pos = min(len(buf) - 1, rng.choice(hot) + rng.randrange(160))
            else:
                pos = rng.randrange(len(buf))
            op = rng.randrange(5)
            if op == 0:
                buf[pos] ^= 1 << rng.randrange(8)
                how.append(f'flip@{pos}')
            elif op == 1:
                buf[pos] = rng.randrange(256)
                how.append(f'set@{pos}')
            elif op == 2:
                buf[pos] = rng.choice(_INTERESTING)
                how.append(f'opcode@{pos}')
            elif op == 3:
                n = rng.randrange(1, 9)
                del buf[pos:pos + n]
                how.append(f'del{n}@{pos}')
            else:
                n = rng.randrange(1, 33)
                src = rng.randrange(len(data))
                buf[pos:pos] = data[src:src + n]
                how.append(f'ins{n}@{pos}')
        yield f'#{k} ' + ','.join(how), bytes(buf)


def use_numpy_values(obj: Any, depth: int = 0) -> int:
    """Print, copy and convert every numpy value in a loaded checkpoint
    (a forged one that loaded crashes here, not in the loader); returns
    how many there were."""
    from mmengine.logging import HistoryBuffer
    if depth > 50:
        return 0
    if isinstance(obj, (np.ndarray, np.generic)):
        repr(obj.dtype), obj.copy(), np.ravel(obj)[:8].tolist()
        return 1
    if isinstance(obj, np.dtype):
        repr(obj), np.zeros(2, obj).tolist()
        return 1
    if isinstance(obj, dict):
        return sum(use_numpy_values(k, depth + 1) +
                   use_numpy_values(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(use_numpy_values(v, depth + 1) for v in obj)
    if isinstance(obj, HistoryBuffer):
        return use_numpy_values(vars(obj), depth + 1)
    return 0


def _load(path: str) -> str:
    from mmxai.checkpoint import load_checkpoint_file
    from mmxai.errors import MMXAIError
    try:
        ckpt = load_checkpoint_file(path)
    except MMXAIError as e:
        return f'{type(e).__name__}: {e}'
    return f'loaded ({use_numpy_values(ckpt)} numpy values)'


def main(argv: Any = None) -> int:
    """Exit 0: every file loaded or gave an MMXAIError; 1: some raised
    another exception (a crash ends the process by itself)."""
    parser = argparse.ArgumentParser(prog='checkpoint_fuzz')
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('load')
    p.add_argument('files', nargs='+')
    p = sub.add_parser('fuzz')
    p.add_argument('checkpoint')
    p.add_argument('--count', type=int, default=200)
    p.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    bad = 0

    def report(label: str, path: str) -> None:
        nonlocal bad
        print(f'{label}: ...', flush=True)  # last line if it crashes
        try:
            outcome = _load(path)
        except Exception as e:  # noqa: B902 what the test reports
            bad += 1
            outcome = f'UNHANDLED {type(e).__name__}: {e}'
        print(f'{label}: {outcome.splitlines()[0] if outcome else outcome}'
              f'{" [MULTILINE]" if len(outcome.splitlines()) > 1 else ""}',
              flush=True)

    if args.cmd == 'load':
        for f in args.files:
            report(f, f)
    else:
        name, data = pickle_member(args.checkpoint)
        with tempfile.TemporaryDirectory() as tmp:
            dst = osp.join(tmp, 'mutant.pth')
            for label, mutant in mutated_pickles(data, args.count, args.seed):
                replace_member(args.checkpoint, name, mutant, dst)
                report(label, dst)
                os.remove(dst)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
