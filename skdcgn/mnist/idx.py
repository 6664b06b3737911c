"""The real MNIST test split, read from a folder in the standard IDX layout (plain or gzipped files).

The CGN teachers are evaluated on datasets built from real MNIST digits, so these have to come from the real
files: either already in the folder (a shared read-only copy, or one downloaded before) or downloaded from
torchvision's mirrors. Reading goes through torchvision's own IDX reader so the parsing is the one every MNIST
user gets; this module only adds what that reader lacks: .gz support without touching the data folder,
atomic md5-checked downloads, and one readable error instead of an assert or a view() failure.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from skdcgn.utils.atomic import atomic_file
from skdcgn.utils.progress import Advance, progress

MNIST_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGIT_SIZE = 28
NUM_CLASSES = 10
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 16
# What a corrupt or truncated file makes gzip or torchvision's reader raise: EOFError / BadGzipFile (an OSError)
# from gzip; AssertionError (bad header), RuntimeError (data length not matching the header's shape), and
# TypeError / ValueError (wrong dtype or rank) from the reader; KeyError (unknown type code) when asserts are off.
_CORRUPT_FILE_ERRORS = (AssertionError, EOFError, KeyError, OSError, RuntimeError, TypeError, ValueError)
# urllib raises URLError and socket timeouts (both OSError); a connection cut mid-body raises IncompleteRead.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, http.client.HTTPException)


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
    for name in missing:
        _download(folder, f"{name}.gz")
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


def _download(folder: Path, gz_name: str) -> None:
    """Fetch one file from the first mirror that serves it with torchvision's md5."""
    from torchvision.datasets.mnist import MNIST

    md5 = dict(MNIST.resources)[gz_name]
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in MNIST.mirrors:
        url = f"{mirror}{gz_name}"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                    progress(f"download {url} (bytes)", int(response.headers.get("Content-Length") or 0),
                             every=16 * _CHUNK_BYTES) as advance:
                _save_verified(response, folder / gz_name, md5, advance)
            return
        except _DOWNLOAD_ERRORS as error:
            failures.append(f"{url}: {_describe(error)}")
    raise _unavailable(folder, f"download of {gz_name} failed (offline?): {'; '.join(failures)}")


def _save_verified(source: BinaryIO, target: Path, md5: str, advance: Advance) -> None:
    """Stream to a hidden sibling and rename only once complete and md5-checked: a download cut short (network,
    Ctrl-C, md5 mismatch) never leaves a file that a later run would take for complete."""
    with atomic_file(target) as partial:
        digest = hashlib.md5(usedforsecurity=False)
        with open(partial, "wb") as sink:
            for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
                digest.update(chunk)
                sink.write(chunk)
                advance(len(chunk))
        if digest.hexdigest() != md5:
            raise RuntimeError(f"md5 {digest.hexdigest()} instead of {md5}")
