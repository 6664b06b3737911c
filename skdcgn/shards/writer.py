"""Writing a shard dataset: batches of samples cut into shards of `shard_size` records, resumable after a kill,
and given its real name only once checked (format.py says what the directory holds).

Shard k is written by worker k mod `writers` (shards.workers; started when its first shard comes, so never more
workers than shards) while the teacher goes on; with `writers` = 0 in this process. Several processes can write
one dataset, each its own shards (shards.parts). With `num_classes`, the per-class sums of the images are added
up here as batches pass, so that the class means cost no pass of their own over the data, however large it is.
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
from skdcgn.shards.format import CLASS_MEANS, FORMAT, ROWS_PATTERN, SHARD_PATTERN, HostPixels, ShardError
from skdcgn.shards.parts import SUMS_GLOB, Part, load_sums, save_sums, shard_index
from skdcgn.shards.validation import validate
from skdcgn.shards.workers import Piece, ShardSink, WorkerSink
from skdcgn.utils.atomic import atomic_directory, partial_path

RESUME_CHUNK = 256  # kept samples decoded at a time when a resumed run re-adds them to the class sums


@dataclass
class ShardWriter:
    """Writes batches of samples into shards of `shard_size` records; `close` completes the manifest.

    With `resume`, the whole shards a killed run (or the parts, shards.parts) left are kept: `whole` says which.
    As a `part` of several processes it writes only that part's shards and `close` leaves them, with the part's
    class sums, for the final writer to join. With `total` (the dataset's size) the last shard ends when its last
    sample comes, and the final writer checks that no shard is missing.
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
    total: int = 0  # samples the dataset will hold; 0: not known in advance (a lone writer only)
    part: Part = field(default_factory=Part)
    num_samples: int = 0  # samples in the directory's whole shards and written since
    whole: set = field(default_factory=set)  # this writer's shards kept from before
    _next: int = 0  # where add_batch goes on when not told
    _sinks: dict = field(default_factory=dict)  # worker slot -> sink
    _means: ClassMeans | None = None

    def __post_init__(self) -> None:
        if self.writers < 0:
            raise ValueError(f"writers {self.writers}; allowed: 0 (this process) or more worker processes")
        if not (self.part.alone or self.total):
            raise ValueError("a part of several writers needs the dataset's total number of samples")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.whole = {k for k in self._whole_shards() if self.part.owns(k)} if self.resume else set()
        sums = [self.directory / self.part.sums_file] if not self.part.alone else \
            list(self.directory.glob(SUMS_GLOB))
        for path in self.directory.iterdir():
            if self._stale(path, sums):
                path.unlink()
        self.num_samples = sum(pq.read_metadata(self.directory / (ROWS_PATTERN % k)).num_rows for k in self.whole)
        if self.num_classes:
            self._means = ClassMeans(self.num_classes)
            covered = load_sums([path for path in sums if path.is_file()], self._means)
            if not covered <= self.whole:
                raise ShardError(f"{self.directory}: class sums cover shards {sorted(covered - self.whole)}, which "
                                 f"are not whole; delete the partial directory and start again")
            for k in sorted(self.whole - covered):
                self._add_kept(self.directory / (SHARD_PATTERN % k))

    def _whole_shards(self) -> set[int]:
        """Shards that have their rows: the rows are written after the shard's rename, so both are whole."""
        return {shard_index(path.name) for path in self.directory.glob(ROWS_PATTERN.replace("%06d", "[0-9]" * 6))}

    def _stale(self, path: Path, sums: list[Path]) -> bool:
        """What a killed run left that this writer replaces: its own shards' unfinished files (a part touches no
        other part's files), and for a lone writer anything else but the whole shards and parts' sums."""
        shard = shard_index(path.name)
        if shard is not None:
            return self.part.owns(shard) and shard not in self.whole
        if path in sums:
            return not self.resume
        return self.part.alone

    def missing(self) -> list[int]:
        """This writer's shards still to write, in order (all shards of `total`, less the whole ones)."""
        shards = -(-self.total // self.shard_size)
        return [k for k in range(shards) if self.part.owns(k) and k not in self.whole]

    def _add_kept(self, path: Path) -> None:
        """A kept shard's images into the class sums (only a resumed run reads back what it wrote). A record's
        members come sorted by name, so its `cls` comes before its image. With a lossy codec the sums are
        those of the decoded images, which differ from the pixels an uninterrupted run sums."""
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

    def add_batch(self, keys: list[str], labels: torch.Tensor, images: torch.Tensor | HostPixels, arrays: dict,
                  first: int | None = None) -> None:
        """Samples `first`, `first` + 1, ... of the dataset (default: after the last ones added): images
        (B, C, H, W) float in value_range, or their HostPixels already on the way; arrays name -> (B, ...)
        tensors."""
        first = self._next if first is None else first
        if isinstance(images, torch.Tensor):
            images = HostPixels(images, self.value_range)
        pixels = images.numpy()
        if self._means is not None:
            self._means.add(torch.from_numpy(pixels).permute(0, 3, 1, 2), labels)
        labels = labels.detach().cpu().numpy().astype(np.int64)
        arrays = {name: value.detach().cpu().numpy() for name, value in arrays.items()}
        layout = {"members": sorted(["cls", self.codec.member] + [f"{name}.npy" for name in arrays]),
                  "image_shape": [pixels.shape[3], *pixels.shape[1:3]]}
        start = 0
        while start < len(keys):
            shard, offset = divmod(first + start, self.shard_size)
            if not self.part.owns(shard) or shard in self.whole:
                raise ValueError(f"sample {first + start} is in shard {shard}, which part {self.part} does not write")
            stop = min(len(keys), start + self.shard_size - offset)
            size = min(self.shard_size, self.total - shard * self.shard_size) if self.total else self.shard_size
            piece = Piece(shard, keys[start:stop], labels[start:stop], pixels[start:stop],
                          {name: array[start:stop] for name, array in arrays.items()}, layout,
                          ends_shard=offset + stop - start == size)
            self._sink(shard).write(piece)
            start = stop
        self.num_samples += len(keys)
        self._next = first + len(keys)

    def _sink(self, shard: int):
        # A part's shards are every count-th: spread them over its workers by their place among its own.
        slot = shard // self.part.count % self.writers if self.writers else 0
        if slot not in self._sinks:
            self._sinks[slot] = WorkerSink(self.directory, self.codec) if self.writers else \
                ShardSink(self.directory, self.codec)
        return self._sinks[slot]

    def abort(self) -> None:
        for sink in self._sinks.values():
            sink.stop()

    def close(self) -> None:
        """A lone writer completes the dataset; a part leaves its whole shards and class sums for the joiner."""
        for sink in self._sinks.values():
            sink.close()
        shards = -(-self.total // self.shard_size)
        absent = sorted({k for k in range(shards) if self.part.owns(k)} - self._whole_shards())
        if absent:
            raise ShardError(f"{self.directory}: shards {absent[:5]} are missing; a part has not finished: run it "
                             f"(or a lone writer, which writes what is missing) with resume")
        if not self.part.alone:
            if self._means is not None and self._means.sums is not None:
                save_sums(self.directory / self.part.sums_file, self._means,
                          {k for k in range(shards) if self.part.owns(k)})
            return
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
        return written["layout"]

    def drop_progress(self) -> None:
        """Delete what a resumed run goes on from, once the dataset is checked: the parts' sums first, so that a
        kill in between leaves whole shards with their rows and no sums that cover a shard without them."""
        for pattern in (SUMS_GLOB, ROWS_PATTERN.replace("%06d", "*")):
            for path in sorted(self.directory.glob(pattern)):
                path.unlink()


@contextmanager
def writing_dataset(directory: Path, resume: bool = False, part: Part = Part(),
                    **writer_options) -> Iterator[ShardWriter]:
    """Write a dataset under its partial name; check it; only then give it its real name.

    A crash or a bad shard leaves at most `.<name>.partial`, which no reader looks at and the next run replaces,
    or, with `resume`, continues from its whole shards (the caller makes sure they come from the same inputs).
    The check after writing compares files with what the writers recorded (counts, bytes, end blocks) without
    re-reading every sample; readers check sha256 and every member when they open it (`open_dataset`).
    One `part` of several writes its shards into the partial directory and leaves it there: the others' files
    are not its to touch, and a lone writer with `resume` joins them all (shards.parts).
    """
    directory = Path(directory)
    if not part.alone:
        partial_path(directory).mkdir(parents=True, exist_ok=True)
        with _closing(ShardWriter(partial_path(directory), resume=True, part=part, **writer_options)) as writer:
            yield writer
        return
    with atomic_directory(directory, keep=resume) as partial:
        with _closing(ShardWriter(partial, resume=resume, **writer_options)) as writer:
            yield writer
        validate(partial, deep=False)
        writer.drop_progress()


@contextmanager
def _closing(writer: ShardWriter) -> Iterator[ShardWriter]:
    """Close the writer when the block ends; a failure stops its workers and leaves the open shards unfinished."""
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()
