"""Sample shards: uncompressed WebDataset tars plus a manifest that proves they are complete.

One tar record carries everything about one sample (key, label, noise vectors, image), so a sample's noise and
image can never be re-paired by index arithmetic downstream. A dataset directory holds:

    shard-000000.tar ...   the records (PNG or JPEG image, <name>.npy arrays, cls label)
    manifest.parquet       one row per sample: key, label, shard, and the same arrays as columns
    shards.parquet         one row per shard: name, n_samples, bytes, sha256
    dataset.json           what a reader needs: members, image channels/size/value range, free-form `info`

WebDataset silently drops a truncated tar, so nothing reads a dataset that `validate` has not accepted.
Writing lives in `skdcgn.shard_writer`.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from skdcgn.hashing import file_sha256

SHARD_PATTERN = "shard-%06d.tar"
ROWS_PATTERN = "shard-%06d.rows.parquet"  # a whole shard's manifest rows, until the writer's `close` joins them
IMAGE_MEMBERS = {"png": "png", "jpeg": "jpg"}  # image format -> tar member suffix
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


def read_meta(directory: Path) -> dict:
    path = Path(directory) / "dataset.json"
    if not path.is_file():
        raise ShardError(f"{directory}: not a shard dataset (no dataset.json); run the stage that writes it")
    return json.loads(path.read_text())


def validate(directory: Path, deep: bool = True) -> dict:
    """Check every shard against the manifest; raise ShardError naming the first bad shard. Returns the meta.

    `deep=False` skips re-reading the shards (sha256, every member): for the writer, which recorded both as it
    wrote; sizes, end blocks and counts are still checked."""
    directory = Path(directory)
    meta = read_meta(directory)
    shard_table = read_parquet(directory / "shards.parquet").to_pylist()
    manifest = read_parquet(directory / "manifest.parquet")
    if sum(row["n_samples"] for row in shard_table) != meta["num_samples"] or manifest.num_rows != meta["num_samples"]:
        raise ShardError(f"{directory}: shard table, manifest and dataset.json disagree on the number of samples")
    keys_by_shard: dict[str, list[str]] = {}
    for key, shard in zip(manifest.column("key").to_pylist(), manifest.column("shard").to_pylist()):
        keys_by_shard.setdefault(shard, []).append(key)
    for row in shard_table:
        _check_shard(directory / row["name"], row, keys_by_shard.get(row["name"], []), meta["members"], deep)
    return meta


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ShardError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None


def _check_shard(path: Path, row: dict, keys: list[str], members: list[str], deep: bool) -> None:
    if not path.is_file():
        raise ShardError(f"{path}: missing shard")
    size = path.stat().st_size
    if size != row["bytes"] or size % TAR_BLOCK:
        raise ShardError(f"{path}: truncated or altered ({size} bytes, manifest says {row['bytes']})")
    if deep and file_sha256(path) != row["sha256"]:
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted)")
    # The hash only proves the file is what was written; the end blocks and members prove it was a whole tar.
    with open(path, "rb") as handle:
        handle.seek(size - 2 * TAR_BLOCK)
        if size < 2 * TAR_BLOCK or handle.read(2 * TAR_BLOCK).strip(b"\0"):
            raise ShardError(f"{path}: no end-of-archive blocks (truncated)")
    if not deep:
        return
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
    return [str(Path(directory) / name) for name in read_parquet(Path(directory) / "shards.parquet")["name"].to_pylist()]


def iter_samples(directory: Path) -> Iterator[dict]:
    """Stream validated samples in manifest order: {"key", "label", "image" uint8 (C, H, W), <array names>}."""
    meta = validate(directory)
    for record in read_records(shard_urls(directory)):
        yield decode_record(record, meta)


def read_records(urls: list[str]) -> Iterator[dict]:
    """The raw records of these shards, in order: {"__key__", member -> bytes}. No node or worker splitting:
    every caller reads exactly the shards it names (skdcgn.streaming deals shards out itself). Only for
    shards that `validate` accepted."""
    import webdataset as wds

    yield from wds.WebDataset(urls, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None)


def decode_record(record: dict, meta: dict) -> dict:
    pixels = np.asarray(Image.open(io.BytesIO(record[IMAGE_MEMBERS[meta["image"].get("format", "png")]])))
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    sample = {
        "key": record["__key__"],
        "label": int(record["cls"]),
        "image": torch.from_numpy(pixels.copy()).permute(2, 0, 1),
    }
    for name in meta["arrays"]:
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
