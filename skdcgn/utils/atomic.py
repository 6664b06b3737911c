"""Writing so that nothing half-written is ever taken for complete.

A file or a directory is built under a hidden partial name beside its place (`.<name>.partial`) and renamed into
place only when whole: a rename within one file system is atomic, so a reader sees the old version or the new
one, never half of one. Every output of the project is written this way.
"""

from __future__ import annotations

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
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
