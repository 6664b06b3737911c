"""Reading (and downloading) the MNIST test split; the network is never the internet, only localhost.

Reading and its errors run on a small split the tests write in the IDX format; the real one (`skdcgn fetch`)
is checked for what both accepted copies of it share."""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from pathlib import Path

import pytest
import torch

from skdcgn.fetch import catalog
from skdcgn.fetch.catalog import FIRST_5000, FULL_SPLIT, MNIST_SHA256
from skdcgn.mnist.idx import MNIST_TEST_FILES, MnistUnavailable, load_mnist_test
from skdcgn.utils.hashing import file_sha256
from test_fetch import UNREACHABLE, LocalOrigin, origin, whole  # noqa: F401 (origin is a fixture)

IMAGES, LABELS = MNIST_TEST_FILES
SMALL = 50
DIGITS = torch.randint(0, 256, (SMALL, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
LABELS_OF = torch.arange(SMALL) % 10
COUNT_OF = {FIRST_5000: 5000, FULL_SPLIT: 10000}


def idx_bytes(name: str) -> bytes:
    """The small split's file in the IDX format: a magic number with the type (0x08, uint8) and rank, each
    dimension as a big-endian int32, then the values."""
    if name == IMAGES:
        return struct.pack(">IIII", 0x803, SMALL, 28, 28) + DIGITS.numpy().tobytes()
    return struct.pack(">II", 0x801, SMALL) + LABELS_OF.to(torch.uint8).numpy().tobytes()


def write_split(folder: Path, gzipped: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_TEST_FILES:
        data = idx_bytes(name)
        (folder / (f"{name}.gz" if gzipped else name)).write_bytes(gzip.compress(data) if gzipped else data)
    return folder


def serve_mnist(monkeypatch, mirrors: list[str], accept: Path | None = None) -> None:
    """The catalog's mnist group downloaded from `mirrors`; accepted by the sha256 of the files in `accept`
    where given, else by the real ones."""
    group = catalog.CATALOG.groups["mnist"]
    assets = tuple(dataclasses.replace(item, urls=tuple(mirror + item.name for mirror in mirrors),
                                       accepted={file_sha256(accept / item.name): "the test's"} if accept
                                       else item.accepted) for item in group.assets)
    monkeypatch.setattr(catalog, "CATALOG", dataclasses.replace(
        catalog.CATALOG, groups={"mnist": dataclasses.replace(group, assets=assets)}))


def mirror_of(server: LocalOrigin, folder: Path) -> str:
    """`server` made a mirror of the .gz files in `folder`."""
    for name in MNIST_TEST_FILES:
        server.serve(f"/{name}.gz", whole((folder / f"{name}.gz").read_bytes()))
    return f"{server.url}/"


def test_the_real_split_is_one_of_its_two_accepted_copies(real_data):
    copies = {MNIST_SHA256[f"{name}.gz"][file_sha256(real_data.mnist / f"{name}.gz")] for name in MNIST_TEST_FILES}
    assert len(copies) == 1, "images and labels from different copies"
    count = COUNT_OF[copies.pop()]
    digits, labels = load_mnist_test(real_data.mnist, download=False)
    assert digits.shape == (count, 28, 28) and digits.dtype == torch.uint8
    assert labels.shape == (count,) and labels.dtype == torch.int64
    # Every class, each about a tenth of the digits, in either copy.
    assert (torch.bincount(labels, minlength=10) > count // 12).all() and labels.max() == 9
    # Real strokes: a dark background with saturated ink, not an empty or constant image.
    assert digits.max() == 255 and 0.05 < (digits > 0).float().mean() < 0.4


def test_plain_and_gz_files_read_the_same_and_gz_reads_write_nothing(tmp_path):
    for folder in (write_split(tmp_path / "plain", gzipped=False), write_split(tmp_path / "gz")):
        before = sorted(os.listdir(folder))
        digits, labels = load_mnist_test(folder, download=False)
        assert torch.equal(digits, DIGITS) and torch.equal(labels, LABELS_OF)
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
    (write_split(tmp_path) / f"{IMAGES}.gz").unlink()
    with pytest.raises(MnistUnavailable, match=f"{IMAGES} absent and download disabled"):
        load_mnist_test(tmp_path, download=False)


def test_offline_download_fails_cleanly(tmp_path, monkeypatch):
    serve_mnist(monkeypatch, [UNREACHABLE])
    with pytest.raises(MnistUnavailable) as caught:
        load_mnist_test(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "offline" in message and f"{UNREACHABLE}{IMAGES}.gz" in message and "skdcgn fetch --from" in message
    assert list(tmp_path.iterdir()) == []


def test_download_goes_through_the_fetch_downloader_to_the_next_mirror(tmp_path, monkeypatch, origin, capsys):
    served = write_split(tmp_path / "served")
    serve_mnist(monkeypatch, [UNREACHABLE, mirror_of(origin, served)], accept=served)
    digits, labels = load_mnist_test(tmp_path / "fresh")
    assert torch.equal(digits, DIGITS) and torch.equal(labels, LABELS_OF)
    assert sorted(os.listdir(tmp_path / "fresh")) == sorted(f"{name}.gz" for name in MNIST_TEST_FILES)
    size = (served / f"{IMAGES}.gz").stat().st_size
    assert f"{IMAGES}.gz (bytes): {size}/{size}" in capsys.readouterr().out  # progress in bytes


def test_only_the_missing_file_is_downloaded(tmp_path, monkeypatch, origin):
    served = write_split(tmp_path / "served")
    serve_mnist(monkeypatch, [mirror_of(origin, served)], accept=served)
    (write_split(tmp_path / "fresh") / f"{LABELS}.gz").unlink()
    load_mnist_test(tmp_path / "fresh")
    assert [path for path, _ in origin.requests] == [f"/{LABELS}.gz"]


def test_a_file_without_an_accepted_sha256_leaves_nothing(tmp_path, monkeypatch, origin):
    # The real catalog's sha256 are those of the real split, which the small one served here cannot match.
    serve_mnist(monkeypatch, [mirror_of(origin, write_split(tmp_path / "served"))])
    with pytest.raises(MnistUnavailable, match="sha256 [0-9a-f]{64} is not an accepted one"):
        load_mnist_test(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_truncated_gz_is_named(tmp_path):
    gz = write_split(tmp_path) / f"{IMAGES}.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(MnistUnavailable, match=rf"corrupt {IMAGES}\.gz: EOFError"):
        load_mnist_test(tmp_path, download=False)


def test_truncated_idx_payload_is_named(tmp_path):
    write_split(tmp_path)
    (tmp_path / IMAGES).write_bytes(idx_bytes(IMAGES)[:-100])  # the plain file wins over the intact .gz
    with pytest.raises(MnistUnavailable, match=rf"corrupt {IMAGES}: "):
        load_mnist_test(tmp_path, download=False)


def test_empty_file_is_named(tmp_path):
    write_split(tmp_path)
    (tmp_path / LABELS).write_bytes(b"")
    with pytest.raises(MnistUnavailable, match=rf"corrupt {LABELS}: "):
        load_mnist_test(tmp_path, download=False)


def test_images_and_labels_of_different_counts(tmp_path):
    write_split(tmp_path)
    labels = idx_bytes(LABELS)
    (tmp_path / LABELS).write_bytes(struct.pack(">II", 0x801, SMALL - 1) + labels[8:-1])
    with pytest.raises(MnistUnavailable, match=f"{SMALL} images but {SMALL - 1} labels"):
        load_mnist_test(tmp_path, download=False)
