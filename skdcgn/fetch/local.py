"""`--from DIR`: assets taken from a local folder instead of their origins.

The folder may be laid out like the project's defaults, like the origins (a clone of the CGN repository), or
any other way: each asset is looked for by file name anywhere below it, its own name or its origin's, and the
first candidate whose sha256 is accepted is copied (so the three `ckp.pth` of a clone are told apart by their
bytes). Copies are plain files of their own, never links into a folder that may be read-only.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from skdcgn.fetch.catalog import Asset, FetchError
from skdcgn.fetch.install import CHUNK_BYTES, Fill, HashingWriter, OriginFailed, few_words


@dataclass(frozen=True)
class LocalFolder:
    path: Path
    files: dict[str, list[Path]]  # every file below `path` by its name, so that one walk serves every asset

    @classmethod
    def scan(cls, path: Path) -> LocalFolder:
        path = Path(path)
        if not path.is_dir():
            raise FetchError(f"--from {path}: not a folder; give one holding the files (laid out like the "
                             "project's folders, like a clone of the CGN repository, or any other way)")
        files: dict[str, list[Path]] = defaultdict(list)
        for parent, folders, names in os.walk(path):
            folders.sort()  # a stable order of candidates, whatever the file system's
            for name in sorted(names):
                files[name].append(Path(parent) / name)
        return cls(path, dict(files))

    def origins(self, asset: Asset) -> list[tuple[str, Fill]]:
        """The files that may be `asset`, each with how to copy it."""
        return [(str(path), _copier(path)) for name in asset.file_names for path in self.files.get(name, ())]


def _copier(path: Path) -> Fill:
    def copy(writer: HashingWriter) -> None:
        try:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, writer, CHUNK_BYTES)
        except OSError as error:
            raise OriginFailed(few_words(error)) from error

    return copy
