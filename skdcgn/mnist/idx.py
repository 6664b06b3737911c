"""The real MNIST test split, read from a folder in the standard IDX layout (plain or gzipped files).

The CGN teachers are evaluated on datasets built from real MNIST digits, so these have to come from the real
files: either already in the folder (put there by `skdcgn fetch`, or downloaded before) or downloaded by the
project's one downloader (skdcgn.fetch: torchvision's mirrors, sha256-checked, atomic). Reading goes through
torchvision's own IDX reader so the parsing is the one every MNIST user gets; this module only adds what that
reader lacks: .gz support without touching the data folder, and one readable error instead of an assert or a
view() failure.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from skdcgn.fetch import catalog
from skdcgn.fetch.catalog import FetchError
from skdcgn.fetch.fetching import fetch_files

MNIST_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGIT_SIZE = 28
NUM_CLASSES = 10
# What a corrupt or truncated file makes gzip or torchvision's reader raise: EOFError / BadGzipFile (an OSError)
# from gzip; AssertionError (bad header), RuntimeError (data length not matching the header's shape), and
# TypeError / ValueError (wrong dtype or rank) from the reader; KeyError (unknown type code) when asserts are off.
_CORRUPT_FILE_ERRORS = (AssertionError, EOFError, KeyError, OSError, RuntimeError, TypeError, ValueError)


class MnistUnavailable(RuntimeError):
    """The MNIST test split can be neither read from its folder nor downloaded into it."""


def load_mnist_test(folder: Path, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits uint8 (N, 28, 28) and labels int64 (N,) of the MNIST test split in `folder`.

    Each file may be plain or gzipped (the plain one wins when both exist). Missing files are downloaded into
    `folder` when `download` is set; otherwise, or when every mirror fails, MnistUnavailable is raised.
    """
    folder = Path(folder)
    missing = [name for name in MNIST_TEST_FILES if _find(folder, name) is None]
    if missing and not download:
        raise _unavailable(folder, f"{' and '.join(missing)} absent and download disabled")
    if missing:
        _download(folder, missing)
    # torchvision takes ~2 s to import: only stages that read real digits pay for it.
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images_name, labels_name = MNIST_TEST_FILES
    digits = _read(folder, _find(folder, images_name), read_image_file)
    labels = _read(folder, _find(folder, labels_name), read_label_file)
    _check_consistent(folder, digits, labels)
    return digits, labels


def _unavailable(folder: Path, why: str) -> MnistUnavailable:
    """One line, so that it reads whole in a log or a CLI error: where, what is needed, and why it failed."""
    needed = " and ".join(f"{name}[.gz]" for name in MNIST_TEST_FILES)
    return MnistUnavailable(f"MNIST test split unavailable in {folder} (needs {needed}): {why}")


def _describe(error: BaseException) -> str:
    """Type and first message line: asserts have no message, and HTTP errors can span several lines."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _find(folder: Path, name: str) -> Path | None:
    """The plain file if present, else its .gz, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read(folder: Path, path: Path, reader: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Apply torchvision's reader, which opens only plain files, to a .gz via a scratch copy outside `folder`."""
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with tempfile.TemporaryDirectory() as scratch:
            plain = Path(scratch) / path.stem
            with gzip.open(path, "rb") as source, plain.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            return reader(str(plain))
    except _CORRUPT_FILE_ERRORS as error:
        raise _unavailable(folder, f"unreadable or corrupt {path.name}: {_describe(error)}") from error


def _check_consistent(folder: Path, digits: torch.Tensor, labels: torch.Tensor) -> None:
    """Catch well-formed files that do not belong together (another IDX file, or a cut-down copy of one)."""
    if tuple(digits.shape[1:]) != (DIGIT_SIZE, DIGIT_SIZE):
        raise _unavailable(folder, f"images are {tuple(digits.shape[1:])}, not {DIGIT_SIZE}x{DIGIT_SIZE}")
    if digits.shape[0] != labels.shape[0]:
        raise _unavailable(folder, f"{digits.shape[0]} images but {labels.shape[0]} labels")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < NUM_CLASSES:
        raise _unavailable(folder, f"labels outside 0..{NUM_CLASSES - 1}")


def _download(folder: Path, names: list[str]) -> None:
    """The missing files, gzipped, as `skdcgn fetch mnist` brings them, but into `folder`. The catalog is looked
    up at each call, so that a test can serve it from a local mirror."""
    wanted = {f"{name}.gz" for name in names}
    assets = [asset for asset in catalog.CATALOG.groups["mnist"].assets if asset.name in wanted]
    try:
        fetch_files([(folder / asset.name, asset) for asset in assets])
    except FetchError as error:
        raise _unavailable(folder, f"download failed: {error}") from None
