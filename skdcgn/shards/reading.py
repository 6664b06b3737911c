"""Reading a shard dataset: validated once when opened, then read in order, in chunks or whole.

A stage opens each dataset it reads once (`open_dataset`: the deep check, sha256 of every shard) and hands the
`Dataset` on; nothing after that checks the shards again. Reading goes through the shards in manifest order,
one after another, with the reader of the tars that shards.tar writes (WebDataset's records, without tarfile's
generic header parsing), so memory holds one chunk, whatever the size of the dataset.
"""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from skdcgn.shards.codec import decode_image
from skdcgn.shards.format import CLASS_MEANS, IMAGE_MEMBERS, ShardError, read_parquet
from skdcgn.shards.tar import read_members
from skdcgn.shards.validation import validate
from skdcgn.utils.progress import progress

CHUNK = 4096  # samples decoded at a time by `load`


@dataclass(frozen=True)
class Dataset:
    """A dataset directory that `validate` accepted, with what a reader needs from its meta."""

    directory: Path
    meta: dict
    urls: tuple[str, ...]

    @property
    def num_samples(self) -> int:
        return self.meta["num_samples"]

    @property
    def value_range(self) -> tuple[float, float]:
        return tuple(self.meta["image"]["value_range"])

    @property
    def info(self) -> dict:
        return self.meta["info"]

    def class_means(self) -> torch.Tensor:
        """(num_classes, C, H, W) mean image per class, float32 in 0..255 units, as the writer summed them."""
        if not self.meta.get("class_means"):
            raise ShardError(f"{self.directory}: has no class means (only teacher samples do)")
        return torch.from_numpy(np.load(self.directory / CLASS_MEANS, allow_pickle=False))

    def records(self, urls: list[str] | tuple[str, ...] | None = None) -> Iterator[dict]:
        """The raw records of these shards (default: all), in order: {"__key__", member -> bytes}, as WebDataset
        groups them. No node or worker splitting: every caller reads exactly the shards it names
        (shards.streaming deals them out)."""
        for url in urls or self.urls:
            yield from group_records(read_members(Path(url)))

    def decode(self, record: dict) -> dict:
        """{"key", "label", "image" uint8 (C, H, W), <array name> tensors} of one record."""
        pixels = decode_image(record[IMAGE_MEMBERS[self.meta["image"]["format"]]])
        sample = {"key": record["__key__"], "label": int(record["cls"]),
                  "image": torch.from_numpy(pixels.copy()).permute(2, 0, 1)}
        for name in self.meta["arrays"]:
            sample[name] = torch.from_numpy(decode_array(record[f"{name}.npy"]))
        return sample

    def chunks(self, size: int) -> Iterator[dict]:
        """The samples in manifest order, `size` at a time, stacked: {"key": list, "label" (B,), "image" uint8
        (B, C, H, W), <array name> (B, ...)}."""
        samples = (self.decode(record) for record in self.records())
        while chunk := list(itertools.islice(samples, size)):
            yield stack(chunk)

    def load(self) -> dict:
        """The whole dataset in memory (MNIST-size): images stay uint8, so 100k samples cost 300 MB, not 1.2 GB."""
        chunks = []
        with progress(f"load {self.directory.name}", self.num_samples, every=CHUNK * 10) as advance:
            for chunk in self.chunks(CHUNK):
                chunks.append(chunk)
                advance(len(chunk["key"]))
        if not chunks:
            raise ShardError(f"{self.directory}: no samples")
        return {name: sum((c[name] for c in chunks), []) if name == "key" else torch.cat([c[name] for c in chunks])
                for name in chunks[0]}


def group_records(members: Iterator[tuple[str, bytes]]) -> Iterator[dict]:
    """Consecutive members of one key -> one record, the key being the name up to the first dot (as WebDataset
    splits `000123.z.npy` into `000123` and `z.npy`)."""
    record: dict = {}
    for name, data in members:
        key, _, member = name.partition(".")
        if record and key != record["__key__"]:
            yield record
            record = {}
        record.setdefault("__key__", key)
        if member in record:
            raise ShardError(f"sample {key}: member {member!r} appears twice")
        record[member] = data
    if record:
        yield record


def decode_array(data: bytes) -> np.ndarray:
    """An .npy member's bytes -> a writable array, without pickles. Every record of a dataset has the same few
    headers, so each is parsed once (np.load parses it per call: 5.2 s of evaluate's 60,000 arrays, profiled)."""
    version = data[6]
    length_bytes = 2 if version == 1 else 4
    start = 8 + length_bytes
    end = start + int.from_bytes(data[8:start], "little")
    shape, fortran_order, dtype = _npy_header(data[:end])
    count = int(np.prod(shape))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=end)
    return array.reshape(shape, order="F" if fortran_order else "C").copy()


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    stream = io.BytesIO(header)
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(stream)
    if dtype.hasobject:
        raise ShardError("an .npy member holds Python objects; shards hold plain numeric arrays only")
    return shape, fortran_order, dtype


def open_dataset(directory: Path) -> Dataset:
    """Validate a dataset (deeply: once per stage) and open it for reading."""
    directory = Path(directory)
    meta = validate(directory)
    names = read_parquet(directory / "shards.parquet")["name"].to_pylist()
    return Dataset(directory, meta, tuple(str(directory / name) for name in names))


def stack(samples: list[dict]) -> dict:
    """Decoded samples -> one batch: keys as a list, everything else stacked."""
    batch = {"key": [s["key"] for s in samples], "label": torch.tensor([s["label"] for s in samples])}
    for name in samples[0]:
        if name not in batch:
            batch[name] = torch.stack([s[name] for s in samples])
    return batch

