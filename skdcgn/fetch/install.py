"""Putting a file into place only once it is whole and its sha256 accepted, whichever origin its bytes come from.

Every origin (a URL, a file in a local folder) is a function that writes the bytes into a `HashingWriter`; the
writer hashes them as they go into the hidden partial beside the target, which is renamed into place only when
its sha256 is accepted. A failed origin leaves nothing behind, so the next one starts clean.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

from skdcgn.utils.atomic import atomic_file

CHUNK_BYTES = 1 << 16  # what is read and written at a time, from a socket or a local file


class OriginFailed(Exception):
    """One origin could not supply the file; the message is the few words the final error shows for it."""


class HashingWriter:
    """The partial file and the sha256 of what it holds, kept in step, so that a resumed download hashes only
    the bytes it appends."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        """Back to empty: the origin is sending the whole file again."""
        self._handle.seek(0)
        self._handle.truncate()
        self._digest = hashlib.sha256()
        self.size = 0

    def sha256(self) -> str:
        return self._digest.hexdigest()


class OriginsFailed(Exception):
    """No origin could supply the file; `failures` holds "origin (why)" for each one tried."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


def few_words(error: object) -> str:
    """An error's first message line, or its type where it has none (a bare timeout, a reset connection)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


Fill = Callable[[HashingWriter], None]  # writes an origin's bytes, or raises OriginFailed


def install_first(target: Path, accepted: Mapping[str, str], origins: Iterable[tuple[str, Fill]]) -> tuple[str, str]:
    """(origin, sha256) of the first origin whose bytes are accepted (any, where `accepted` is empty), now at
    `target`. Raises OriginsFailed with each origin's failure when none is."""
    failures = []
    for origin, fill in origins:
        try:
            return origin, _install(target, accepted, fill)
        except OriginFailed as error:
            failures.append(f"{origin} ({error})")
    raise OriginsFailed(failures)


def _install(target: Path, accepted: Mapping[str, str], fill: Fill) -> str:
    with _parent_folders(target), atomic_file(target) as partial:
        with open(partial, "wb") as handle:
            writer = HashingWriter(handle)
            fill(writer)
        sha256 = writer.sha256()
        if accepted and sha256 not in accepted:
            raise OriginFailed(f"sha256 {sha256} is not an accepted one")
    return sha256


@contextmanager
def _parent_folders(target: Path) -> Iterator[None]:
    """Creates the folders above `target`, and removes those it created when the block fails: an empty
    textures/object/ left by a failed fetch would pass a check for the folder."""
    created = [folder for folder in target.parents if not folder.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in created:
            _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: something else was put there meanwhile
        pass
