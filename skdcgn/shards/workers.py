"""Encoding and writing shards, in this process or in worker processes so that it never stalls the teacher.

Encoding a sample (PNG or JPEG, .npy arrays, tar headers) costs more than a small teacher's forward pass. A
`WorkerSink` runs a `ShardSink` in a forked process behind a bounded queue (two batches), so the teacher's
process only turns batches into uint8 pixels and goes on. The bytes are the same either way: a shard's content
depends on its samples only.

A shard is written under its partial name and renamed when full; its manifest rows, byte count and sha256
then land beside it (`<shard>.rows.parquet`), so a killed run leaves whole shards and, at most, one partial file
per worker.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import queue
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from skdcgn.shards.codec import ImageCodec
from skdcgn.shards.format import ROWS_PATTERN, SHARD_PATTERN, ShardError
from skdcgn.shards.tar import TarStream
from skdcgn.utils.atomic import atomic_file, commit, partial_path
from skdcgn.utils.hashing import file_sha256
from skdcgn.utils.processes import die_with

QUEUED_BATCHES = 2  # per worker: enough to keep it busy while the teacher computes the next batch


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
            self.tar = TarStream(partial_path(self.directory / (SHARD_PATTERN % self.shard)))
        for i, key in enumerate(piece.keys):
            members = {"cls": str(piece.labels[i]).encode(), self.codec.member: self.codec.encode(piece.pixels[i])}
            members.update({f"{name}.npy": _npy_bytes(array[i]) for name, array in piece.arrays.items()})
            for member in sorted(members):  # webdataset's order: a sample's members sorted by name
                self.tar.add(f"{key}.{member}", members[member])
        self.rows.append(pa.table({"key": pa.array(piece.keys), "label": pa.array(piece.labels),
                                   "shard": pa.array([SHARD_PATTERN % self.shard] * len(piece.keys))}))
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
        commit(partial_path(path), path)
        # One chunk, whatever the batches were: a resumed run writes the same bytes as an uninterrupted one.
        rows = pa.concat_tables(self.rows).combine_chunks()
        self.rows = []
        written = {"layout": self.layout, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
        rows = rows.replace_schema_metadata({name: json.dumps(value) for name, value in written.items()})
        with atomic_file(self.directory / (ROWS_PATTERN % self.shard)) as partial:
            pq.write_table(rows, partial, compression="zstd")

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
    die_with(parent)
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


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()
