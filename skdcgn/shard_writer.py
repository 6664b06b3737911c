"""Writing sample shards, with the encoding in worker processes so that it never stalls the teacher.

Encoding a sample (PNG or JPEG, .npy arrays, tar headers) costs more than a small teacher's forward pass. With
`writers` > 0 the teacher's process only turns each batch into uint8 pixels and hands it on: shard k is
written by worker k mod `writers` (started when its first shard comes, so never more workers than shards),
while the teacher goes on to the next batch. Each worker's queue holds two batches at most, so memory stays flat
however large the dataset. With `writers` = 0 the same code runs in the teacher's process. The bytes are the same
either way: a shard's content depends on its samples only.

A shard is written under a temporary name and renamed when full; its manifest rows, byte count and sha256
then land beside it (`<shard>.rows.parquet`), so a killed run leaves whole shards and, at most, one temporary
file per worker. `close` joins the rows into the manifest.
"""

from __future__ import annotations

import ctypes
import io
import json
import multiprocessing
import os
import queue
import shutil
import signal
import sys
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
from skdcgn.shards import IMAGE_MEMBERS, ROWS_PATTERN, SHARD_PATTERN, ShardError, encode_images, validate
from skdcgn.tarstream import TarStream

# zlib level 1: lossless either way, and encoding speed is what bounds shard writing, not disk.
PNG_COMPRESS_LEVEL = 1
QUEUED_BATCHES = 2  # per worker: enough to keep it busy while the teacher computes the next batch
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ImageCodec:
    """How images are stored: `png` (lossless) or `jpeg` at `quality` (1-95, PIL's useful range)."""

    format: str = "png"
    quality: int = 95

    def __post_init__(self) -> None:
        if self.format not in IMAGE_MEMBERS:
            raise ValueError(f"image format {self.format!r}; allowed: {', '.join(IMAGE_MEMBERS)}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"jpeg quality {self.quality}; allowed: 1 to 95")

    @property
    def member(self) -> str:
        return IMAGE_MEMBERS[self.format]

    def encode(self, pixels: np.ndarray) -> bytes:
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        buffer = io.BytesIO()
        if self.format == "png":
            image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        else:
            # No chroma subsampling: at 32x32 a 2x2 colour block is a large part of a stroke.
            image.save(buffer, format="JPEG", quality=self.quality, subsampling=0)
        return buffer.getvalue()


@dataclass
class Piece:
    """Consecutive samples of one shard, as the teacher's process hands them to a writer."""

    shard: int
    keys: list[str]
    labels: np.ndarray
    pixels: np.ndarray  # uint8 (B, H, W, C)
    arrays: dict[str, np.ndarray]
    layout: dict  # members and image shape, stored with the rows
    ends_shard: bool


class ShardSink:
    """Writes the pieces it is handed into shards, one open shard at a time."""

    def __init__(self, directory: Path, codec: ImageCodec):
        self.directory, self.codec = directory, codec
        self.shard, self.tar, self.rows, self.layout = None, None, [], None

    def write(self, piece: Piece) -> None:
        if self.tar is None:
            self.shard = piece.shard
            self.tar = TarStream(self.directory / f"{SHARD_PATTERN % self.shard}.tmp")
        for i, key in enumerate(piece.keys):
            members = {"cls": str(piece.labels[i]).encode(), self.codec.member: self.codec.encode(piece.pixels[i])}
            members.update({f"{name}.npy": _npy_bytes(array[i]) for name, array in piece.arrays.items()})
            for member in sorted(members):  # webdataset's order: a sample's members sorted by name
                self.tar.add(f"{key}.{member}", members[member])
        columns = {"key": pa.array(piece.keys), "label": pa.array(piece.labels),
                   "shard": pa.array([SHARD_PATTERN % self.shard] * len(piece.keys))}
        columns.update({name: _as_arrow_column(array) for name, array in piece.arrays.items()})
        self.rows.append(pa.table(columns))
        self.layout = piece.layout
        if piece.ends_shard:
            self.finish()

    def finish(self) -> None:
        """Close the open shard, rename it into place, then write its rows: rows on disk mean a whole shard."""
        if self.tar is None:
            return
        self.tar.close()
        self.tar = None
        path = self.directory / (SHARD_PATTERN % self.shard)
        os.replace(self.directory / f"{path.name}.tmp", path)
        # One chunk, whatever the batches were: a resumed run writes the same bytes as an uninterrupted one.
        rows = pa.concat_tables(self.rows).combine_chunks()
        self.rows = []
        written = {"layout": self.layout, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        rows = rows.replace_schema_metadata({name: json.dumps(value) for name, value in written.items()})
        temporary = self.directory / f"{ROWS_PATTERN % self.shard}.tmp"
        pq.write_table(rows, temporary, compression="zstd")
        os.replace(temporary, self.directory / (ROWS_PATTERN % self.shard))

    def close(self) -> None:
        self.finish()

    def stop(self) -> None:
        """Leave the open shard unfinished, as a kill would."""


class WorkerSink:
    """A ShardSink in a worker process, fed through a bounded queue."""

    def __init__(self, directory: Path, codec: ImageCodec):
        # fork: the worker inherits the imported libraries instead of importing torch again (~2 s, ~600 MiB).
        # It uses no torch and no thread pool of the parent, which is what makes forking safe.
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                              else "spawn")
        self.queue = context.Queue(maxsize=QUEUED_BATCHES)
        self.errors = context.SimpleQueue()
        self.process = context.Process(target=_serve, args=(directory, codec, self.queue, self.errors, os.getpid()),
                                       daemon=True)
        self.process.start()

    def write(self, piece: Piece) -> None:
        self._send("write", piece)

    def close(self) -> None:
        self._send("close")
        self.process.join()
        self._check()

    def stop(self) -> None:
        """Let the worker write what it was sent, then end it without finishing its open shard."""
        try:
            self._send("stop")
        except ShardError:
            pass  # it has already ended; the error that ended it is being raised
        self.process.join()

    def _send(self, command: str, piece: Piece | None = None) -> None:
        while True:
            self._check()
            try:
                self.queue.put((command, piece), timeout=1.0)
                return
            except queue.Full:
                continue

    def _check(self) -> None:
        if self.process.exitcode not in (None, 0):
            reason = self.errors.get() if not self.errors.empty() else f"exit code {self.process.exitcode}"
            raise ShardError(f"a shard writer process failed: {reason}")


def _serve(directory: Path, codec: ImageCodec, commands, errors, parent: int) -> None:
    # Ctrl-C reaches the whole process group: the teacher's process decides, and then says "stop".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    sink = ShardSink(directory, codec)
    try:
        while os.getppid() == parent:  # a killed teacher's process leaves the open shard unfinished
            try:
                command, piece = commands.get(timeout=1.0)
            except queue.Empty:
                continue
            if command == "write":
                sink.write(piece)
            else:
                if command == "close":
                    sink.close()
                return
    except Exception as error:
        errors.put(f"{type(error).__name__}: {error}")
        raise SystemExit(1) from None


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this worker when the teacher's process dies. A kill -9 can come in the middle of
    sending a batch, and a worker reading half a message would wait for the rest for ever. Elsewhere the
    worker notices within a second, between messages."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


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
    num_samples: int = 0
    _sinks: dict = field(default_factory=dict)  # worker slot -> sink

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
        channels, height, width = layout["image_shape"]
        members = layout["members"]
        meta = {
            "format": 1,
            "num_samples": self.num_samples,
            "members": members,
            "arrays": [m[: -len(".npy")] for m in members if m.endswith(".npy")],
            "image": {"channels": channels, "height": height, "width": width, "value_range": list(self.value_range),
                      "format": self.codec.format},
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


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _as_arrow_column(stacked: np.ndarray) -> pa.Array:
    """(N,) -> plain column; (N, d) -> fixed_size_list<d>, so a noise vector stays one cell per sample."""
    if stacked.ndim == 1:
        return pa.array(stacked)
    flat = pa.array(stacked.reshape(len(stacked), -1).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(stacked.shape[1:])))


@contextmanager
def writing_dataset(directory: Path, resume: bool = False, **writer_options) -> Iterator[ShardWriter]:
    """Write a dataset under a temporary name; check it; only then give it its real name.

    A crash or a bad shard leaves at most `.<name>.partial`, which no reader looks at and the next run replaces,
    or, with `resume`, continues from its whole shards (the caller makes sure they come from the same inputs).
    The check after writing compares files with what the writers recorded (counts, bytes, end blocks) without
    re-reading every sample; readers check sha256 and every member before they read (`validate`).
    """
    directory = Path(directory)
    partial = directory.with_name(f".{directory.name}.partial")
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
    writer = ShardWriter(partial, resume=resume, **writer_options)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()
    validate(partial, deep=False)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
