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

import hashlib
import io
import json
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

SHARD_PATTERN = "shard-%06d.tar"
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ShardWriter:
    """Writes batches of samples into shards of `shard_size` records; `close` completes the manifest.

    Use `writing_dataset` rather than this class directly, so that a crash never leaves a complete-looking
    directory behind. The manifest is streamed one row group per batch: memory does not grow with the dataset.
    """

    directory: Path
    shard_size: int
    value_range: tuple[float, float]
    info: dict = field(default_factory=dict)
    num_samples: int = 0
    _members: list = field(default_factory=list)
    _image_shape: tuple = ()
    _tar_writer: object = None
    _manifest_writer: object = None

    def __post_init__(self) -> None:
        import webdataset as wds  # costs ~1 s: only the commands that write shards pay it

        self.directory.mkdir(parents=True, exist_ok=True)
        # mtime=0 and no compression: the same samples always give the same bytes, so DVC sees no change.
        self._tar_writer = wds.ShardWriter(
            str(self.directory / SHARD_PATTERN), maxcount=self.shard_size, mtime=0, encoder=False, verbose=0
        )

    def add_batch(self, keys: list[str], labels: torch.Tensor, images: torch.Tensor, arrays: dict) -> None:
        """Append samples: images (B, C, H, W) float in value_range, arrays name -> (B, ...) tensors."""
        pixels = encode_images(images, self.value_range)
        labels = labels.detach().cpu().numpy().astype(np.int64)
        arrays = {name: value.detach().cpu().numpy() for name, value in arrays.items()}
        self._members = sorted(["cls", "png"] + [f"{name}.npy" for name in arrays])
        self._image_shape = tuple(images.shape[1:])
        shards = [SHARD_PATTERN % ((self.num_samples + i) // self.shard_size) for i in range(len(keys))]
        for i, key in enumerate(keys):
            record = {"__key__": key, "cls": str(labels[i]).encode(), "png": _png_bytes(pixels[i])}
            record.update({f"{name}.npy": _npy_bytes(array[i]) for name, array in arrays.items()})
            self._tar_writer.write(record)
        self.num_samples += len(keys)
        columns = {"key": pa.array(keys), "label": pa.array(labels), "shard": pa.array(shards)}
        columns.update({name: _as_arrow_column(array) for name, array in arrays.items()})
        self._write_manifest_rows(pa.table(columns))

    def _write_manifest_rows(self, table: pa.Table) -> None:
        if self._manifest_writer is None:
            self._manifest_writer = pq.ParquetWriter(
                self.directory / "manifest.parquet", table.schema, compression="zstd"
            )
        self._manifest_writer.write_table(table)

    def close(self) -> None:
        self._tar_writer.close()
        if not self.num_samples:
            raise ShardError(f"{self.directory}: no samples were written")
        self._manifest_writer.close()
        self._write_shard_table()
        channels, height, width = self._image_shape
        meta = {
            "format": 1,
            "num_samples": self.num_samples,
            "members": self._members,
            "arrays": [m[: -len(".npy")] for m in self._members if m.endswith(".npy")],
            "image": {"channels": channels, "height": height, "width": width, "value_range": list(self.value_range)},
            "info": self.info,
        }
        (self.directory / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def _write_shard_table(self) -> None:
        paths = sorted(self.directory.glob("shard-*.tar"))
        counts = [min(self.shard_size, self.num_samples - i * self.shard_size) for i in range(len(paths))]
        table = pa.table(
            {
                "name": [p.name for p in paths],
                "n_samples": pa.array(counts, pa.int64()),
                "bytes": pa.array([p.stat().st_size for p in paths], pa.int64()),
                "sha256": [_sha256(p) for p in paths],
            }
        )
        pq.write_table(table, self.directory / "shards.parquet", compression="zstd")


def _as_arrow_column(stacked: np.ndarray) -> pa.Array:
    """(N,) -> plain column; (N, d) -> fixed_size_list<d>, so a noise vector stays one cell per sample."""
    if stacked.ndim == 1:
        return pa.array(stacked)
    flat = pa.array(stacked.reshape(len(stacked), -1).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(stacked.shape[1:])))


@contextmanager
def writing_dataset(directory: Path, **writer_options) -> Iterator[ShardWriter]:
    """Write a dataset under a temporary name; validate it; only then give it its real name.

    A crash or a bad shard leaves at most `.<name>.partial`, which no reader looks at and the next run replaces.
    """
    directory = Path(directory)
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    writer = ShardWriter(partial, **writer_options)
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
    if _sha256(path) != row["sha256"]:
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
