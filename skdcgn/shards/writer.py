"""Writing a shard dataset: batches of samples cut into shards of `shard_size` records, resumable after a kill,
and given its real name only once checked (format.py says what the directory holds).

Shard k is written by worker k mod `writers` (shards.workers; started when its first shard comes, so never more
workers than shards) while the teacher goes on; with `writers` = 0 in this process. With `num_classes`, the
per-class sums of the images are added up here as batches pass, so that the class means cost no pass of their
own over the data, however large it is.
"""

from __future__ import annotations

import json
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from skdcgn.metrics.baseline import ClassMeans
from skdcgn.shards.codec import ImageCodec, decode_image
from skdcgn.shards.format import CLASS_MEANS, FORMAT, ROWS_PATTERN, SHARD_PATTERN, ShardError, encode_images
from skdcgn.shards.validation import validate
from skdcgn.shards.workers import Piece, ShardSink, WorkerSink
from skdcgn.utils.atomic import atomic_directory

RESUME_CHUNK = 256  # kept samples decoded at a time when a resumed run re-adds them to the class sums


@dataclass
class ShardWriter:
    """Writes batches of samples into shards of `shard_size` records; `close` completes the manifest.

    With `resume`, the whole shards a killed run left are kept and `num_samples` says where to go on from.
    Use `writing_dataset` rather than this class directly, so that a crash never leaves a complete-looking
    directory behind.
    """

    directory: Path
    shard_size: int
    value_range: tuple[float, float]
    info: dict = field(default_factory=dict)
    resume: bool = False
    writers: int = 0  # worker processes; 0 = encode in this process
    codec: ImageCodec = field(default_factory=ImageCodec)
    num_classes: int = 0  # > 0: labels are classes 0..num_classes-1 and their mean images are stored
    num_samples: int = 0
    _sinks: dict = field(default_factory=dict)  # worker slot -> sink
    _means: ClassMeans | None = None

    def __post_init__(self) -> None:
        if self.writers < 0:
            raise ValueError(f"writers {self.writers}; allowed: 0 (this process) or more worker processes")
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = self._whole_shards() if self.resume else 0
        keep = {name for i in range(kept) for name in (SHARD_PATTERN % i, ROWS_PATTERN % i)}
        for path in self.directory.iterdir():
            if path.name not in keep:
                path.unlink()
        self.num_samples = kept * self.shard_size
        if self.num_classes:
            self._means = ClassMeans(self.num_classes)
            for i in range(kept):
                self._add_kept(self.directory / (SHARD_PATTERN % i))

    def _whole_shards(self) -> int:
        """Shards 0..k-1 that have their rows: the rows are written after the shard's rename, so both are whole."""
        count = 0
        while (self.directory / (ROWS_PATTERN % count)).is_file():
            count += 1
        return count

    def _add_kept(self, path: Path) -> None:
        """A kept shard's images into the class sums (only a resumed run reads back what it wrote). A record's
        members come sorted by name, so its `cls` comes before its image."""
        labels, images = [], []
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                data = archive.extractfile(member).read()
                if member.name.endswith(".cls"):
                    labels.append(int(data))
                elif member.name.endswith(f".{self.codec.member}"):
                    images.append(torch.from_numpy(decode_image(data).copy()).permute(2, 0, 1))
                if len(images) == RESUME_CHUNK:
                    self._means.add(torch.stack(images), torch.tensor(labels))
                    labels, images = [], []
        if images:
            self._means.add(torch.stack(images), torch.tensor(labels))

    def add_batch(self, keys: list[str], labels: torch.Tensor, images: torch.Tensor, arrays: dict) -> None:
        """Append samples: images (B, C, H, W) float in value_range, arrays name -> (B, ...) tensors."""
        pixels = encode_images(images, self.value_range)
        if self._means is not None:
            self._means.add(torch.from_numpy(pixels).permute(0, 3, 1, 2), labels)
        labels = labels.detach().cpu().numpy().astype(np.int64)
        arrays = {name: value.detach().cpu().numpy() for name, value in arrays.items()}
        layout = {"members": sorted(["cls", self.codec.member] + [f"{name}.npy" for name in arrays]),
                  "image_shape": list(images.shape[1:])}
        start = 0
        while start < len(keys):
            shard, offset = divmod(self.num_samples, self.shard_size)
            stop = min(len(keys), start + self.shard_size - offset)
            piece = Piece(shard, keys[start:stop], labels[start:stop], pixels[start:stop],
                          {name: array[start:stop] for name, array in arrays.items()}, layout,
                          ends_shard=offset + stop - start == self.shard_size)
            self._sink(shard).write(piece)
            self.num_samples += stop - start
            start = stop

    def _sink(self, shard: int):
        slot = shard % self.writers if self.writers else 0
        if slot not in self._sinks:
            self._sinks[slot] = WorkerSink(self.directory, self.codec) if self.writers else \
                ShardSink(self.directory, self.codec)
        return self._sinks[slot]

    def abort(self) -> None:
        for sink in self._sinks.values():
            sink.stop()

    def close(self) -> None:
        for sink in self._sinks.values():
            sink.close()
        if not self.num_samples:
            raise ShardError(f"{self.directory}: no samples were written")
        layout = self._join_manifest()
        if self._means is not None:
            np.save(self.directory / CLASS_MEANS, self._means.means().numpy(), allow_pickle=False)
        channels, height, width = layout["image_shape"]
        members = layout["members"]
        meta = {
            "format": FORMAT,
            "num_samples": self.num_samples,
            "members": members,
            "arrays": [m[: -len(".npy")] for m in members if m.endswith(".npy")],
            "image": {"channels": channels, "height": height, "width": width, "value_range": list(self.value_range),
                      "format": self.codec.format},
            "class_means": self._means is not None,
            "info": self.info,
        }
        (self.directory / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def _join_manifest(self) -> dict:
        """The shards' rows, in order, streamed into manifest.parquet (one row group per shard), and the shard
        table from what the writers recorded as they wrote. Returns the layout."""
        parts = sorted(self.directory.glob(ROWS_PATTERN.replace("%06d", "*")))
        writer, shards = None, []
        for part in parts:
            rows = pq.read_table(part)
            written = {name.decode(): json.loads(value) for name, value in rows.schema.metadata.items()}
            rows = rows.replace_schema_metadata(None)
            writer = writer or pq.ParquetWriter(self.directory / "manifest.parquet", rows.schema, compression="zstd")
            writer.write_table(rows)
            shards.append({"name": rows["shard"][0].as_py(), "n_samples": rows.num_rows, "bytes": written["bytes"],
                           "sha256": written["sha256"]})
        writer.close()
        shard_table = pa.Table.from_pylist(shards, pa.schema([("name", pa.string()), ("n_samples", pa.int64()),
                                                              ("bytes", pa.int64()), ("sha256", pa.string())]))
        pq.write_table(shard_table, self.directory / "shards.parquet", compression="zstd")
        for part in parts:
            part.unlink()
        return written["layout"]


@contextmanager
def writing_dataset(directory: Path, resume: bool = False, **writer_options) -> Iterator[ShardWriter]:
    """Write a dataset under its partial name; check it; only then give it its real name.

    A crash or a bad shard leaves at most `.<name>.partial`, which no reader looks at and the next run replaces,
    or, with `resume`, continues from its whole shards (the caller makes sure they come from the same inputs).
    The check after writing compares files with what the writers recorded (counts, bytes, end blocks) without
    re-reading every sample; readers check sha256 and every member when they open it (`open_dataset`).
    """
    with atomic_directory(Path(directory), keep=resume) as partial:
        writer = ShardWriter(partial, resume=resume, **writer_options)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()
        validate(partial, deep=False)
