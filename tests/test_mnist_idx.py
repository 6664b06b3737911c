"""Reading (and downloading) the real MNIST test split; the network is never the internet, only localhost."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Iterator

import pytest
import torch
from torchvision.datasets import MNIST

from conftest import SHARED
from skdcgn.mnist.idx import MNIST_TEST_FILES, MnistUnavailable, load_mnist_test

HALF_TEST = SHARED / "data" / "mnist-test-half"
IMAGES, LABELS = MNIST_TEST_FILES
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, so the connection is refused at once


@pytest.fixture(scope="module")
def shared_split() -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist_test(HALF_TEST, download=False)


@pytest.fixture
def mirror() -> Iterator[str]:
    """A local HTTP mirror serving the shared .gz files, standing in for torchvision's."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HALF_TEST)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def copy_split(folder: Path) -> Path:
    for name in MNIST_TEST_FILES:
        shutil.copy(HALF_TEST / f"{name}.gz", folder / f"{name}.gz")
    return folder


def decompressed(name: str) -> bytes:
    return gzip.decompress((HALF_TEST / f"{name}.gz").read_bytes())


def test_shared_half_split_has_5000_real_digits_of_every_class(shared_split):
    digits, labels = shared_split
    assert digits.shape == (5000, 28, 28) and digits.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert labels.min() == 0 and labels.max() == 9
    assert (torch.bincount(labels, minlength=10) > 400).all()
    # Real strokes: a dark background with saturated ink, not an empty or constant image.
    assert digits.max() == 255 and 0.05 < (digits > 0).float().mean() < 0.4


def test_plain_copies_read_the_same_and_gz_reads_write_nothing(shared_split, tmp_path):
    plain, gz = tmp_path / "plain", tmp_path / "gz_only"
    plain.mkdir()
    gz.mkdir()
    copy_split(gz)
    for name in MNIST_TEST_FILES:
        (plain / name).write_bytes(decompressed(name))
    for folder in (plain, gz):
        before = sorted(os.listdir(folder))
        digits, labels = load_mnist_test(folder, download=False)
        assert torch.equal(digits, shared_split[0]) and torch.equal(labels, shared_split[1])
        assert sorted(os.listdir(folder)) == before


def test_absent_files_without_download_name_folder_and_both_files(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(MnistUnavailable) as caught:
        load_mnist_test(folder, download=False)
    message = str(caught.value)
    assert "\n" not in message
    assert str(folder) in message and IMAGES in message and LABELS in message
    assert "download disabled" in message
    assert not folder.exists()


def test_a_single_missing_file_is_reported(tmp_path):
    shutil.copy(HALF_TEST / f"{LABELS}.gz", tmp_path)
    with pytest.raises(MnistUnavailable, match=f"{IMAGES} absent and download disabled"):
        load_mnist_test(tmp_path, download=False)


def test_offline_download_fails_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [UNREACHABLE])
    with pytest.raises(MnistUnavailable) as caught:
        load_mnist_test(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "offline" in message and UNREACHABLE in message
    assert list(tmp_path.iterdir()) == []


def test_download_falls_back_to_the_next_mirror(shared_split, tmp_path, monkeypatch, mirror, capsys):
    # The shared files are a cut-down split, so their md5 stands in for torchvision's full-split ones.
    resources = [(f"{name}.gz", md5_of(HALF_TEST / f"{name}.gz")) for name in MNIST_TEST_FILES]
    monkeypatch.setattr(MNIST, "mirrors", [UNREACHABLE, mirror])
    monkeypatch.setattr(MNIST, "resources", resources)
    digits, labels = load_mnist_test(tmp_path / "fresh")
    assert torch.equal(digits, shared_split[0]) and torch.equal(labels, shared_split[1])
    assert sorted(os.listdir(tmp_path / "fresh")) == sorted(f"{name}.gz" for name in MNIST_TEST_FILES)
    # Progress in bytes, ending at the whole file.
    size = (HALF_TEST / f"{MNIST_TEST_FILES[0]}.gz").stat().st_size
    assert f"{MNIST_TEST_FILES[0]}.gz (bytes): {size}/{size}" in capsys.readouterr().out


def test_md5_mismatch_leaves_no_file(tmp_path, monkeypatch, mirror):
    # Unpatched resources carry the full split's md5, which the served half split cannot match.
    monkeypatch.setattr(MNIST, "mirrors", [mirror])
    with pytest.raises(MnistUnavailable, match="md5"):
        load_mnist_test(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_truncated_gz_is_named(tmp_path):
    copy_split(tmp_path)
    gz = tmp_path / f"{IMAGES}.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(MnistUnavailable, match=rf"corrupt {IMAGES}\.gz: EOFError"):
        load_mnist_test(tmp_path, download=False)


def test_truncated_idx_payload_is_named(tmp_path):
    copy_split(tmp_path)
    (tmp_path / IMAGES).write_bytes(decompressed(IMAGES)[:-100])  # the plain file wins over the intact .gz
    with pytest.raises(MnistUnavailable, match=rf"corrupt {IMAGES}: "):
        load_mnist_test(tmp_path, download=False)


def test_empty_file_is_named(tmp_path):
    copy_split(tmp_path)
    (tmp_path / LABELS).write_bytes(b"")
    with pytest.raises(MnistUnavailable, match=rf"corrupt {LABELS}: "):
        load_mnist_test(tmp_path, download=False)


def test_images_and_labels_of_different_counts(tmp_path):
    copy_split(tmp_path)
    labels = decompressed(LABELS)
    magic, count = struct.unpack(">II", labels[:8])
    (tmp_path / LABELS).write_bytes(struct.pack(">II", magic, count - 1) + labels[8:-1])
    with pytest.raises(MnistUnavailable, match=f"{count} images but {count - 1} labels"):
        load_mnist_test(tmp_path, download=False)
