"""``FeatureCache``: a long video's frame-feature sequence, in chunks on disk.

A two-stage phase model's frame features (backbone + the head's pooling,
one ``D``-vector per frame of the sampling grid) are computed once per frame
and kept here, so that explaining minute 40 reruns only the temporal head
on features already stored, and a killed run resumes where it stopped.

Layout (``folder``)::

    meta.json           the key (video, checkpoint, settings), D, chunk size
    chunk_000000.npy    float32 [n, D]: grid frames 0 .. n-1 (n <= chunk)
    chunk_000001.npy    grid frames chunk .. chunk + n - 1
    ...

Chunk ``c`` holds a *prefix* of its grid frames ``[c*chunk, (c+1)*chunk)``
(complete chunks are ``chunk`` long; a chunk is extended by rewriting it).
Every file is written atomically (temporary file + rename), so a kill leaves
whole chunks only; the frames of a chunk not yet flushed are recomputed.
A cache made for another key (another video, checkpoint or settings) is
refused with the field that differs, or emptied with ``refresh=True``.
"""
import glob
import os
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from ..errors import OutputError
from ..fileio import (atomic_path, clean_stale, json_safe, read_json,
                      write_json)

__all__ = ['FeatureCache', 'CACHE_FORMAT']

#: Version of the on-disk format (part of the key).
CACHE_FORMAT = 1
_META = 'meta.json'


def _chunk_name(c: int) -> str:
    return f'chunk_{c:06d}.npy'


def _differs(a: Any, b: Any, prefix: str = '') -> Optional[str]:
    """The first dotted key where ``a`` and ``b`` differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _differs(a.get(k), b.get(k), f'{prefix}{k}.')
            if d:
                return d
        return None
    return None if a == b else prefix.rstrip('.') or '(key)'


class FeatureCache:
    """Frame features ``[T, D]`` of one video on a sampling grid.

    Args:
        folder: where the chunks live (created).
        key: what the features depend on (JSON-able: the video's identity,
            the weights' fingerprint, the grid and pipeline settings).
        num_frames: grid frames ``T`` of the video.
        chunk: grid frames per chunk file.
        refresh: empty a cache made for another key instead of refusing.

    Raises:
        OutputError: ``folder`` holds a cache of another key (and
            ``refresh`` is off), or cannot be written.
    """

    def __init__(self, folder: str, key: Dict[str, Any], num_frames: int,
                 chunk: int = 256, refresh: bool = False) -> None:
        if chunk < 1:
            raise OutputError(f'feature cache chunk {chunk}: give 1 or more')
        self.folder = folder
        self.key = json_safe(dict(key, format=CACHE_FORMAT,
                                  num_frames=int(num_frames)))
        self.num_frames = int(num_frames)
        self.chunk = int(chunk)
        self.dim: Optional[int] = None
        #: grid frames computed and added in this session
        self.added = 0
        self._buf: Dict[int, List[np.ndarray]] = {}
        self._lengths: Dict[int, int] = {}
        os.makedirs(folder, exist_ok=True)
        clean_stale(folder)  # temporary files of killed runs
        meta = read_json(osp.join(folder, _META))
        stale = glob.glob(osp.join(folder, 'chunk_*.npy'))
        if meta is not None:
            field = _differs(meta.get('key'), self.key)
            if field is None and int(meta.get('chunk', -1)) != self.chunk:
                field = 'chunk'
            if field is not None:
                if not refresh:
                    raise OutputError(
                        f'feature cache {folder} was made for another '
                        f'input ({field} differs); delete it, choose '
                        'another --out-dir, or refresh it (refresh=True, '
                        '--refresh-features)')
                meta = None
            else:
                self.dim = meta.get('dim')
        if meta is None:
            for path in stale:
                os.remove(path)
            self._write_meta()

    # ------------------------------------------------------------ state
    @property
    def num_chunks(self) -> int:
        return (self.num_frames + self.chunk - 1) // self.chunk

    def _path(self, c: int) -> str:
        return osp.join(self.folder, _chunk_name(c))

    def _write_meta(self) -> None:
        write_json(osp.join(self.folder, _META),
                   dict(key=self.key, chunk=self.chunk, dim=self.dim,
                        dtype='float32', layout='chunk_NNNNNN.npy [n, D]'))

    def stored(self, c: int) -> int:
        """Grid frames stored in chunk ``c`` (on disk)."""
        if c not in self._lengths:
            path = self._path(c)
            n = 0
            if osp.exists(path):
                try:
                    arr = np.load(path, mmap_mode='r')
                    if arr.ndim == 2 and (self.dim is None or
                                          arr.shape[1] == self.dim):
                        n = int(arr.shape[0])
                except (OSError, ValueError):
                    n = 0  # unreadable: recomputed
            self._lengths[c] = n
        return self._lengths[c]

    def _have(self, c: int) -> int:
        """Stored + buffered frames of chunk ``c``."""
        return self.stored(c) + sum(len(b) for b in self._buf.get(c, []))

    def missing(self, lo: int = 0, hi: Optional[int] = None) -> np.ndarray:
        """Grid frames to compute (in increasing order) so that frames
        ``lo .. hi-1`` are cached: a chunk is filled from its stored end,
        so a few frames before ``lo`` may be included."""
        hi = self.num_frames if hi is None else min(int(hi), self.num_frames)
        out = []
        for c in range(lo // self.chunk, (hi - 1) // self.chunk + 1
                       if hi > lo else 0):
            start = c * self.chunk
            need = min(hi, start + self.chunk) - start
            have = self._have(c)
            if have < need:
                out.append(np.arange(start + have, start + need))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def has(self, lo: int, hi: int) -> bool:
        return len(self.missing(lo, hi)) == 0

    # ---------------------------------------------------------- writing
    def add(self, indices: Iterable[int], feats: np.ndarray) -> None:
        """Add the features ``[m, D]`` of grid frames ``indices`` (each the
        next frame of its chunk); a chunk is written when it is complete
        (or at :meth:`flush`)."""
        feats = np.asarray(feats, np.float32)
        indices = np.asarray(list(indices), np.int64)
        if feats.ndim != 2 or len(feats) != len(indices):
            raise ValueError(f'features {feats.shape} for {len(indices)} '
                             'frames')
        if self.dim is None:
            self.dim = int(feats.shape[1])
            self._write_meta()
        elif feats.shape[1] != self.dim:
            raise ValueError(f'features of {feats.shape[1]} channels, the '
                             f'cache holds {self.dim}')
        for c in np.unique(indices // self.chunk):
            sel = indices // self.chunk == c
            idx = indices[sel]
            c = int(c)
            start = c * self.chunk + self._have(c)
            if idx[0] != start or np.any(np.diff(idx) != 1):
                raise ValueError(f'chunk {c} continues at grid frame {start}'
                                 f', got frames {idx[0]}..{idx[-1]}')
            self._buf.setdefault(c, []).append(feats[sel])
            end = c * self.chunk + self._have(c)
            if end >= min(self.num_frames, (c + 1) * self.chunk):
                self._flush_chunk(c)
        self.added += len(indices)

    def _flush_chunk(self, c: int) -> None:
        parts = self._buf.pop(c, [])
        if not parts:
            return
        n = self.stored(c)
        if n:
            parts = [np.load(self._path(c))[:n]] + parts
        arr = np.ascontiguousarray(np.concatenate(parts), np.float32)
        with atomic_path(self._path(c), suffix='.npy') as tmp:
            with open(tmp, 'wb') as f:
                np.save(f, arr)
        self._lengths[c] = len(arr)

    def flush(self) -> None:
        """Write every buffered frame."""
        for c in sorted(self._buf):
            self._flush_chunk(c)

    # ---------------------------------------------------------- reading
    def read(self, lo: int = 0, hi: Optional[int] = None) -> np.ndarray:
        """Features of grid frames ``lo .. hi-1`` as ``[D, hi - lo]``.

        Raises:
            OutputError: some of them are not cached.
        """
        self.flush()
        hi = self.num_frames if hi is None else int(hi)
        if not 0 <= lo < hi <= self.num_frames:
            raise ValueError(f'grid frames {lo}..{hi} outside 0..'
                             f'{self.num_frames}')
        if not self.has(lo, hi):
            raise OutputError(f'feature cache {self.folder}: grid frames '
                              f'{lo}..{hi - 1} are not all computed')
        parts = []
        for c in range(lo // self.chunk, (hi - 1) // self.chunk + 1):
            start = c * self.chunk
            a, b = max(lo, start) - start, min(hi, start + self.chunk) - start
            parts.append(np.load(self._path(c), mmap_mode='r')[a:b])
        return np.ascontiguousarray(np.concatenate(parts).T)

    def __repr__(self) -> str:
        done = sum(self.stored(c) for c in range(self.num_chunks))
        return (f'FeatureCache({self.folder!r}, {done}/{self.num_frames} '
                f'frames, D={self.dim})')
