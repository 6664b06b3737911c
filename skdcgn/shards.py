"""Sample shards: uncompressed WebDataset tars plus a manifest that proves they are complete.

One tar record carries everything about one sample (key, label, noise vectors, image), so a sample's noise and
image can never be re-paired by index arithmetic downstream. A dataset directory holds:

    shard-000000.tar ...   the records (PNG image, <name>.npy arrays, cls label)
    manifest.parquet       one row per sample: key, label, shard, and the same arrays as columns
    shards.parquet         one row per shard: name, n_samples, bytes, sha256
    dataset.json           what a reader needs: members, image channels/size/value range, free-form `info`

WebDataset silently drops a truncated tar, so nothing reads a dataset that `validate` has not accepted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from skdcgn.hashing import file_sha256

SHARD_PATTERN = "shard-%06d.tar"
ROWS_PATTERN = "shard-%06d.rows.parquet"  # a whole shard's manifest rows, until `close` joins them
# zlib level 1: lossless either way, and encoding speed is what bounds shard writing, not disk.
PNG_COMPRESS_LEVEL = 1
TAR_BLOCK = 512


class ShardError(Exception):
    """A dataset on disk is missing, truncated or does not match its manifest."""


def encode_images(images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Float images (B, C, H, W) in value_range -> uint8 (B, H, W, C), rounding to the nearest of 256 levels."""
    lo, hi = value_range
    scaled = (images.detach().float().cpu() - lo) * (255.0 / (hi - lo))
    return scaled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decode_images(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in value_range: the inverse of encode_images up to rounding."""
    lo, hi = value_range
    return images.float() * ((hi - lo) / 255.0) + lo


def _png_bytes(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class ShardWriter:
    """Writes batches of samples into shards of `shard_size` records; `close` completes the manifest.

    A shard is written under a temporary name and renamed when full, and its manifest rows then land beside it
    (`<shard>.rows.parquet`), so a killed run leaves whole shards and, at most, one temporary file. With
    `resume`, the whole shards a killed run left are kept and `num_samples` says where to go on from.
    Use `writing_dataset` rather than this class directly, so that a crash never leaves a complete-looking
    directory behind. Memory holds one shard's manifest rows at most, never the dataset's.
    """

    directory: Path
    shard_size: int
    value_range: tuple[float, float]
    info: dict = field(default_factory=dict)
    resume: bool = False
    num_samples: int = 0
    _layout: dict = field(default_factory=dict)  # members and image shape: the same for every sample
    _tar: object = None
    _rows: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = self._whole_shards() if self.resume else 0
        keep = {name for i in range(kept) for name in (SHARD_PATTERN % i, ROWS_PATTERN % i)}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink()
        self.num_samples = kept * self.shard_size
        if kept:
            rows = self.directory / (ROWS_PATTERN % (kept - 1))
            self._layout = json.loads(pq.read_schema(rows).metadata[b"layout"])

    def _whole_shards(self) -> int:
        """Shards 0..k-1 that have their rows: the rows are written after the shard's rename, so both are whole."""
        count = 0
        while (self.directory / (ROWS_PATTERN % count)).is_file():
            count += 1
        return count

    def add_batch(self, keys: list[str], labels: torch.Tensor, images: torch.Tensor, arrays: dict) -> None:
        """Append samples: images (B, C, H, W) float in value_range, arrays name -> (B, ...) tensors."""
        pixels = encode_images(images, self.value_range)
        labels = labels.detach().cpu().numpy().astype(np.int64)
        arrays = {name: value.detach().cpu().numpy() for name, value in arrays.items()}
        self._layout = {"members": sorted(["cls", "png"] + [f"{name}.npy" for name in arrays]),
                        "image_shape": list(images.shape[1:])}
        shards = [SHARD_PATTERN % ((self.num_samples + i) // self.shard_size) for i in range(len(keys))]
        columns = {"key": pa.array(keys), "label": pa.array(labels), "shard": pa.array(shards)}
        columns.update({name: _as_arrow_column(array) for name, array in arrays.items()})
        rows = pa.table(columns)
        first = 0  # the batch's first row not yet handed to a shard
        for i, key in enumerate(keys):
            record = {"__key__": key, "cls": str(labels[i]).encode(), "png": _png_bytes(pixels[i])}
            record.update({f"{name}.npy": _npy_bytes(array[i]) for name, array in arrays.items()})
            self._write(record)
            if self.num_samples % self.shard_size == 0:
                self._rows.append(rows.slice(first, i + 1 - first))
                first = i + 1
                self._finish_shard()
        if first < len(keys):
            self._rows.append(rows.slice(first))

    def _write(self, record: dict) -> None:
        if self._tar is None:
            shard = SHARD_PATTERN % (self.num_samples // self.shard_size)
            self._tar = _tar_writer(self.directory / f"{shard}.tmp")
        self._tar.write(record)
        self.num_samples += 1

    def _finish_shard(self) -> None:
        self._tar.close()
        self._tar = None
        index = (self.num_samples - 1) // self.shard_size
        os.replace(self.directory / f"{SHARD_PATTERN % index}.tmp", self.directory / (SHARD_PATTERN % index))
        # One chunk, whatever the batches were: a resumed run writes the same bytes as an uninterrupted one.
        rows = pa.concat_tables(self._rows).combine_chunks()
        self._rows = []
        rows = rows.replace_schema_metadata({"layout": json.dumps(self._layout)})
        temporary = self.directory / f"{ROWS_PATTERN % index}.tmp"
        pq.write_table(rows, temporary, compression="zstd")
        os.replace(temporary, self.directory / (ROWS_PATTERN % index))

    def close(self) -> None:
        if self._tar is not None:
            self._finish_shard()
        if not self.num_samples:
            raise ShardError(f"{self.directory}: no samples were written")
        self._join_manifest()
        self._write_shard_table()
        channels, height, width = self._layout["image_shape"]
        members = self._layout["members"]
        meta = {
            "format": 1,
            "num_samples": self.num_samples,
            "members": members,
            "arrays": [m[: -len(".npy")] for m in members if m.endswith(".npy")],
            "image": {"channels": channels, "height": height, "width": width, "value_range": list(self.value_range)},
            "info": self.info,
        }
        (self.directory / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def _join_manifest(self) -> None:
        """The shards' rows, in order, streamed into manifest.parquet (one row group per shard)."""
        parts = sorted(self.directory.glob(ROWS_PATTERN.replace("%06d", "*")))
        writer = None
        for part in parts:
            rows = pq.read_table(part).replace_schema_metadata(None)
            writer = writer or pq.ParquetWriter(self.directory / "manifest.parquet", rows.schema, compression="zstd")
            writer.write_table(rows)
        writer.close()
        for part in parts:
            part.unlink()

    def _write_shard_table(self) -> None:
        paths = sorted(self.directory.glob("shard-*.tar"))
        counts = [min(self.shard_size, self.num_samples - i * self.shard_size) for i in range(len(paths))]
        table = pa.table(
            {
                "name": [p.name for p in paths],
                "n_samples": pa.array(counts, pa.int64()),
                "bytes": pa.array([p.stat().st_size for p in paths], pa.int64()),
                "sha256": [file_sha256(p) for p in paths],
            }
        )
        pq.write_table(table, self.directory / "shards.parquet", compression="zstd")


def _tar_writer(path: Path):
    import webdataset as wds  # costs ~1 s: only the commands that write shards pay it

    # mtime=0 and no compression: the same samples always give the same bytes, so DVC sees no change.
    return wds.TarWriter(str(path), mtime=0, encoder=False)


def _as_arrow_column(stacked: np.ndarray) -> pa.Array:
    """(N,) -> plain column; (N, d) -> fixed_size_list<d>, so a noise vector stays one cell per sample."""
    if stacked.ndim == 1:
        return pa.array(stacked)
    flat = pa.array(stacked.reshape(len(stacked), -1).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(stacked.shape[1:])))


@contextmanager
def writing_dataset(directory: Path, resume: bool = False, **writer_options) -> Iterator[ShardWriter]:
    """Write a dataset under a temporary name; validate it; only then give it its real name.

    A crash or a bad shard leaves at most `.<name>.partial`, which no reader looks at and the next run replaces,
    or, with `resume`, continues from its whole shards (the caller makes sure they come from the same inputs).
    """
    directory = Path(directory)
    partial = directory.with_name(f".{directory.name}.partial")
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
    writer = ShardWriter(partial, resume=resume, **writer_options)
    yield writer
    writer.close()
    validate(partial)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def read_meta(directory: Path) -> dict:
    path = Path(directory) / "dataset.json"
    if not path.is_file():
        raise ShardError(f"{directory}: not a shard dataset (no dataset.json); run the stage that writes it")
    return json.loads(path.read_text())


def validate(directory: Path) -> dict:
    """Check every shard against the manifest; raise ShardError naming the first bad shard. Returns the meta."""
    directory = Path(directory)
    meta = read_meta(directory)
    shard_table = _read_parquet(directory / "shards.parquet").to_pylist()
    manifest = _read_parquet(directory / "manifest.parquet")
    if sum(row["n_samples"] for row in shard_table) != meta["num_samples"] or manifest.num_rows != meta["num_samples"]:
        raise ShardError(f"{directory}: shard table, manifest and dataset.json disagree on the number of samples")
    keys_by_shard: dict[str, list[str]] = {}
    for key, shard in zip(manifest.column("key").to_pylist(), manifest.column("shard").to_pylist()):
        keys_by_shard.setdefault(shard, []).append(key)
    for row in shard_table:
        _check_shard(directory / row["name"], row, keys_by_shard.get(row["name"], []), meta["members"])
    return meta


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ShardError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None


def _check_shard(path: Path, row: dict, keys: list[str], members: list[str]) -> None:
    if not path.is_file():
        raise ShardError(f"{path}: missing shard")
    size = path.stat().st_size
    if size != row["bytes"] or size % TAR_BLOCK:
        raise ShardError(f"{path}: truncated or altered ({size} bytes, manifest says {row['bytes']})")
    if file_sha256(path) != row["sha256"]:
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted)")
    # The hash only proves the file is what was written; this proves what was written was a whole tar.
    with open(path, "rb") as handle:
        handle.seek(size - 2 * TAR_BLOCK)
        if size < 2 * TAR_BLOCK or handle.read(2 * TAR_BLOCK).strip(b"\0"):
            raise ShardError(f"{path}: no end-of-archive blocks (truncated)")
    found = _members_by_key(path)
    if list(found) != keys:
        raise ShardError(f"{path}: holds {len(found)} samples, manifest lists {len(keys)} (or another order)")
    for key, names in found.items():
        if sorted(names) != members:
            raise ShardError(f"{path}: sample {key} has members {sorted(names)}, expected {members}")


def _members_by_key(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                key, _, suffix = member.name.partition(".")
                found.setdefault(key, []).append(suffix)
    except tarfile.TarError as error:
        raise ShardError(f"{path}: not a readable tar ({error})") from None
    return found


def shard_urls(directory: Path) -> list[str]:
    return [str(Path(directory) / name) for name in _read_parquet(Path(directory) / "shards.parquet")["name"].to_pylist()]


def iter_samples(directory: Path) -> Iterator[dict]:
    """Stream validated samples in manifest order: {"key", "label", "image" uint8 (C, H, W), <array names>}."""
    import webdataset as wds

    meta = validate(directory)
    dataset = wds.WebDataset(shard_urls(directory), shardshuffle=False, empty_check=False)
    for record in dataset:
        yield _decode_record(record, meta["arrays"])


def _decode_record(record: dict, array_names: list[str]) -> dict:
    pixels = np.asarray(Image.open(io.BytesIO(record["png"])))
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    sample = {
        "key": record["__key__"],
        "label": int(record["cls"]),
        "image": torch.from_numpy(pixels.copy()).permute(2, 0, 1),
    }
    for name in array_names:
        sample[name] = torch.from_numpy(np.load(io.BytesIO(record[f"{name}.npy"]), allow_pickle=False))
    return sample


def load_dataset(directory: Path) -> dict:
    """A whole (MNIST-small) dataset in memory: images stay uint8 so 100k samples cost 300 MB, not 1.2 GB."""
    samples = list(iter_samples(directory))
    if not samples:
        raise ShardError(f"{directory}: no samples")
    loaded = {"key": [s["key"] for s in samples], "label": torch.tensor([s["label"] for s in samples])}
    for name in ["image"] + read_meta(directory)["arrays"]:
        loaded[name] = torch.stack([s[name] for s in samples])
    loaded["value_range"] = tuple(read_meta(directory)["image"]["value_range"])
    return loaded
