"""File I/O in one place: atomic writes, JSON/NPZ, staging, writability.

Every file mmxai writes goes through :func:`atomic_path` (a temporary file in
the target folder, ``os.replace``-d onto the target on success), so a kill or
a failure never leaves a half-written file under its final name.
:func:`staged_dir` extends that to a group of files (all or nothing).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import os.path as osp
import shutil
import socket
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from .errors import InputError, OutputError

PathLike = Union[str, 'os.PathLike[str]']

__all__ = ['PathLike', 'atomic_path', 'check_writable', 'staged_dir',
           'clean_stale',
           'write_json', 'write_npz', 'read_json', 'json_default', 'json_safe',
           'read_label_map']


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask() is process-wide, not thread-safe


def _owner_tag() -> str:
    """``<host>~<pid>``: in the names of temporary files and staging
    folders, so a later run can tell those of a dead run (removable) from
    those of a live one."""
    host = ''.join(c if c.isalnum() or c in '-_' else '_'
                   for c in socket.gethostname())[:40] or 'host'
    return f'{host}~{os.getpid()}'


def _dead_owner(name: str) -> bool:
    """True if ``name`` carries this host's tag with a pid not alive."""
    host, pid = _owner_tag().split('~')[0], None
    for part in name.split('.'):
        if part.startswith(host + '~'):
            tail = part[len(host) + 1:]
            pid = int(tail) if tail.isdigit() else None
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive (another user's), keep it
    return False


def clean_stale(folder: PathLike) -> List[str]:
    """Remove the staging folders and temporary files that runs killed
    on this host (SIGKILL, power loss) left in ``folder``; those of live
    runs are kept. Returns what was removed."""
    removed = []
    folder = os.fspath(folder)
    for path in glob.glob(osp.join(folder, '.mmxai-staging*')) + \
            glob.glob(osp.join(folder, '.*.tmp*')):
        if _dead_owner(osp.basename(path)):
            if osp.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
            removed.append(path)
    return removed


def _write_error(target: str, e: OSError) -> OutputError:
    """One line for a failed write; a full disk names the file and the
    space left."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = osp.dirname(osp.abspath(target)) or '.'
        try:
            free = shutil.disk_usage(where).free / 2**20
            left = f'{free:.1f} MB free on {where}'
        except OSError:
            left = f'no space left on {where}'
        return OutputError(f'no space left writing {e.filename or target} '
                           f'({left}); free some space or choose another '
                           '--out-dir')
    return OutputError(f'cannot write {target}: {e.strerror or e}')


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: Optional[str] = None) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; ``os.replace`` it onto
    ``path`` on success.

    The folder is created if needed. On error the temporary file is removed
    and ``path`` is left untouched. ``suffix`` defaults to ``path``'s
    extension (some writers pick the container from it).
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    name = osp.basename(path)
    if suffix is None:
        suffix = osp.splitext(name)[1]
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{name}.{_owner_tag()}.',
                                   suffix=f'.tmp{suffix}', dir=folder)
        os.close(fd)
    except OSError as e:
        raise _write_error(folder, e) from e
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e) from e
        raise


def json_default(obj: Any) -> Any:
    """JSON for numpy scalars/arrays and tensors; ``str`` for the rest."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, 'detach') and hasattr(obj, 'cpu'):  # torch.Tensor
        return obj.detach().cpu().numpy().tolist()
    return str(obj)


def json_safe(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples -> lists, numpy ->
    Python), so a setting compares equal to its stored form."""
    return json.loads(json.dumps(obj, default=json_default))


def write_json(path: PathLike, obj: Any, indent: int = 1) -> str:
    """Write ``obj`` as JSON atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=indent, default=json_default)
    return os.fspath(path)


def write_npz(path: PathLike, arrays: Dict[str, np.ndarray]) -> str:
    """``np.savez_compressed`` atomically; returns ``path``."""
    with atomic_path(path, suffix='.npz') as tmp:
        np.savez_compressed(tmp, **arrays)
    return os.fspath(path)


def read_json(path: PathLike) -> Optional[Any]:
    """The JSON in ``path``, or None if it is missing or not valid JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_writable(out_dir: PathLike) -> None:
    """Fail early (before any work) if ``out_dir`` cannot be created/written.

    The same rule as :func:`mmxai.preflight.check_out_dir` (the CLI's check,
    which must not import this module's numpy; a module may not import its
    own layer, so the few lines are kept in both).

    Raises:
        OutputError: it or a parent is a file, or no write permission.
    """
    out_dir = os.fspath(out_dir)
    probe = osp.abspath(out_dir)
    if osp.exists(probe) and not osp.isdir(probe):
        raise OutputError(f'output folder {out_dir} is a file; choose '
                          'another --out-dir')
    while not osp.exists(probe):
        parent = osp.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not osp.isdir(probe):
        raise OutputError(f'cannot create output folder {out_dir}: '
                          f'{probe} is not a folder')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f'output folder {out_dir} is not writable '
                          f'(no permission on {probe})')


def _staged_files(stage: str) -> List[str]:
    """Relative paths of the files under ``stage``; JSON records last, so a
    reader that trusts a record finds the files it names in place."""
    rels = [osp.relpath(osp.join(dp, f), stage)
            for dp, _, fs in os.walk(stage) for f in fs]
    return sorted(rels, key=lambda r: (r.endswith('.json'), r))


@contextlib.contextmanager
def staged_dir(out_dir: PathLike) -> Iterator[str]:
    """A staging folder inside ``out_dir`` whose files (sub-folders kept)
    are moved into ``out_dir`` on success and deleted on failure."""
    out_dir = os.fspath(out_dir)
    check_writable(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        clean_stale(out_dir)
        stage = tempfile.mkdtemp(prefix=f'.mmxai-staging.{_owner_tag()}.',
                                 dir=out_dir)
    except OSError as e:
        raise _write_error(out_dir, e) from e
    try:
        yield stage
        for rel in _staged_files(stage):
            dst = osp.join(out_dir, rel)
            os.makedirs(osp.dirname(dst), exist_ok=True)
            os.replace(osp.join(stage, rel), dst)
    except OSError as e:
        raise _write_error(out_dir, e) from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def read_label_map(path: Optional[PathLike]) -> Optional[List[str]]:
    """Class names from a label map file (one name per line), or None."""
    if not path:
        return None
    if not osp.isfile(path):
        raise InputError(f'label map not found: {path} (give a text file '
                         'with one class name per line)')
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]
