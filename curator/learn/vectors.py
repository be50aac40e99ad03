"""The vectors' files: one folder per set of vectors, beside the catalog, read memory-mapped.

    vectors/<set id>-<embedder>/vectors.npy   (N, D) float16, row i the vector of ids[i]
    vectors/<set id>-<embedder>/ids.npy       (N,) int64, the image ids
    vectors/<set id>-<embedder>/index.faiss   the approximate index, above EXACT_BELOW rows
    vectors/<set id>-<embedder>/scores.npz    neighbours and centres (curator/learn/vectorscores.py)
    vectors/<set id>-<embedder>/writer.lock   held by the one process writing the set (`writer`)

Both are ordinary ``.npy`` files (``numpy.load(path, mmap_mode="r")`` reads them), written
with a header of fixed length so that rows are appended in place and the header's row count
rewritten, instead of the file rewritten. The catalog says how many rows are whole
(``Embedding.count``); rows past it, written by a run interrupted before it recorded them,
are cut off when the file is opened again. A million 960-value vectors are 1.8 GiB in float16,
read from the page cache as searches need them (the clustering holds a sample as float32).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from curator.errors import CuratorError

#: The header of every file here: magic, version 1.0, its length, and the padded dict.
HEADER = 128
_MAGIC = b"\x93NUMPY\x01\x00"


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': {shape!r}, }}"
    room = HEADER - len(_MAGIC) - 2
    body = text.ljust(room - 1).encode("latin1") + b"\n"
    return _MAGIC + (room).to_bytes(2, "little") + body


def _read_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    with open(path, "rb") as fh:
        head = fh.read(HEADER)
    if len(head) < HEADER or not head.startswith(_MAGIC):
        raise CuratorError(f"{path} is not a vector file of curator; remove its folder")
    info = ast.literal_eval(head[10:].decode("latin1").strip())
    return np.dtype(info["descr"]), tuple(info["shape"])


class Rows:
    """One growable .npy file of rows of ``width`` values of ``dtype`` (width 0: scalars)."""

    def __init__(self, path: Path, dtype: str, width: int) -> None:
        self.path, self.dtype, self.width = path, np.dtype(dtype), width

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.width) if self.width else (rows,)

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * max(1, self.width)

    def open(self, whole: int) -> None:
        """Make the file hold exactly its first ``whole`` rows (made empty if missing)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.write_bytes(_header(self.dtype, self.shape(0)))
        dtype, shape = _read_header(self.path)
        if dtype != self.dtype or (self.width and shape[1:] != (self.width,)):
            raise CuratorError(f"{self.path} holds {dtype} rows of {shape[1:]}, not these")
        held = (self.path.stat().st_size - HEADER) // self.row_bytes
        if held < whole:
            raise CuratorError(
                f"{self.path} holds {held} rows and the catalog {whole}; remove its folder "
                "and run curator embed again"
            )
        with open(self.path, "r+b") as fh:
            fh.truncate(HEADER + whole * self.row_bytes)
            fh.seek(0)
            fh.write(_header(self.dtype, self.shape(whole)))

    def append(self, rows: np.ndarray, before: int) -> None:
        """Write ``rows`` after the first ``before`` rows, on the disk before returning."""
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        with open(self.path, "r+b") as fh:
            fh.seek(HEADER + before * self.row_bytes)
            fh.write(data.tobytes())
            fh.seek(0)
            fh.write(_header(self.dtype, self.shape(before + len(data))))
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, rows: int) -> np.ndarray:
        """The first ``rows`` rows, memory-mapped (read-only)."""
        if rows == 0:
            return np.empty(self.shape(0), dtype=self.dtype)
        return np.memmap(self.path, self.dtype, "r", offset=HEADER, shape=self.shape(rows))


class VectorFiles:
    """A set's vectors and ids, kept in step."""

    def __init__(self, folder: Path, dim: int, dtype: str = "float16") -> None:
        self.folder = folder
        self.vectors = Rows(folder / "vectors.npy", dtype, dim)
        self.ids = Rows(folder / "ids.npy", "int64", 0)

    def open(self, whole: int) -> None:
        self.vectors.open(whole)
        self.ids.open(whole)

    def append(self, ids: list[int], vectors: np.ndarray, before: int) -> None:
        self.vectors.append(vectors, before)
        self.ids.append(np.asarray(ids, dtype=np.int64), before)

    def read(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,), vectors (N, D)) of the first ``rows`` rows, memory-mapped."""
        return self.ids.read(rows), self.vectors.read(rows)


class SetBusy(CuratorError):
    """Another process is writing the set's files."""

    def __init__(self, holder: str) -> None:
        who = "this process" if holder == str(os.getpid()) else f"process {holder}"
        super().__init__(
            f"another curator embed is writing these vectors ({who}); "
            "wait for it to finish, or stop it"
        )


@contextmanager
def writer(folder: Path) -> Iterator[None]:
    """The set's files for one process at a time: an exclusive lock on ``writer.lock`` in
    its folder for the block, freed by the system if the process dies, or `SetBusy` at once
    while another holds it. Two writers would each cut off the rows the other had written
    but not yet recorded, and record rows at the same places. (Where the system or the file
    system has no ``flock``, keeping to one writer is the user's to do.)"""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system
        yield
        return
    fd = os.open(folder / "writer.lock", os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides
    try:
        locked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise SetBusy(holder or "unknown") from None
        except OSError:  # a file system with no locks (NFS without its lock daemon)
            locked = False
        if locked:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # and the lock with it
