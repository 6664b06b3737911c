"""Writing so that nothing half-written is ever taken for complete.

A file or a directory is built under a hidden partial name beside its place (`.<name>.partial`) and renamed into
place only when whole: a rename within one file system is atomic, so a reader sees the old version or the new
one, never half of one. Every output of the project is written this way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def partial_path(path: Path) -> Path:
    """Where `path` is built: hidden, beside it, so that no reader looks there and the rename stays atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def commit(partial: Path, path: Path) -> None:
    """Rename a whole file into place, replacing what was there."""
    os.replace(partial, path)


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yields the partial path to write; renamed to `path` when the block ends, deleted when it fails."""
    partial = partial_path(path)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    commit(partial, path)


def create_once(path: Path, text: str) -> None:
    """Write `text` to `path` unless it exists, atomically against other processes doing the same: the file is
    written whole under a name of this process, then linked into place, which fails where `path` exists. So the
    first writer wins, and nobody reads half of it."""
    own = path.with_name(f".{path.name}.{os.getpid()}.partial")
    own.write_text(text)
    try:
        os.link(own, path)
    except FileExistsError:
        pass
    finally:
        own.unlink()


RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2). False where the system or file system cannot."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    if rename(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


@contextmanager
def atomic_directory(path: Path, keep: bool = False) -> Iterator[Path]:
    """Yields the partial directory to build; it replaces `path` when the block ends.

    A failure leaves the partial directory as it is: the next run wipes it, or, with `keep`, goes on with what
    it holds (a killed run's whole shards or checkpoint; the caller checks that they are its own)."""
    path = Path(path)
    partial = partial_path(path)
    if not keep:
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    yield partial
    # Swapped in one step, the previous output stays whole until the new one takes its place, and a kill while
    # it is being deleted leaves only a partial directory. Where swapping is not possible, delete, then rename.
    if not (path.is_dir() and exchange(partial, path)):
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
    shutil.rmtree(partial, ignore_errors=True)
