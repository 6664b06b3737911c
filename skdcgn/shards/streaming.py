"""Teacher samples streamed from their shards while a student trains: memory holds a shuffle buffer and a few
decoded batches, never the dataset. For datasets too large to hold (ImageNet-size); MNIST-size data trains as
fast from memory (`train.data: memory`, the default; BENCHMARKS.md).

The order depends on the seed, the number of ranks and the number of loader workers, nothing else. The shards
are read as one endless sequence, a permutation seeded by (seed, e) for each epoch e, end to end; item i of it goes
to slot i mod slots (slot = worker x ranks + rank: the order in which training takes their batches). So the slots
move through the epochs together, whether or not the shards divide evenly over them, and every rank gets as many
batches as it asks for. A slot reads its shards through a seeded shuffle buffer and groups the records into
batches of batch_size / ranks. Only then are they decoded. A resumed run neither decodes nor reads the records it
has trained on (`ShardStream._shuffled`), only those its shuffle buffer still holds and those after. The
DataLoader takes one batch from each worker in turn. The class means come with the dataset (the writer summed
them), so nothing reads the shards but training itself.
"""

from __future__ import annotations

import bisect
import itertools
import random
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from skdcgn.shards.format import decode_images, read_parquet
from skdcgn.shards.reading import Dataset
from skdcgn.training import distributed


class ShardStream(IterableDataset):
    """Decoded batches (z, y, uint8 images) of one rank, from `start` (global batch number) on."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, buffer: int, workers: int, start: int):
        self.dataset, self.batch_size, self.seed, self.buffer = dataset, batch_size, seed, buffer
        self.workers, self.start = max(workers, 1), start
        self.rank, self.world = distributed.rank_and_world()  # taken here: workers do not join the process group
        # Records per shard, from the manifest that validation matched against every shard's members (counted in
        # Arrow: a million rows need no Python strings).
        shards = read_parquet(dataset.directory / "manifest.parquet").column("shard").value_counts()
        self.sizes = dict(zip(shards.field("values").to_pylist(), shards.field("counts").to_pylist()))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info else 0
        # The loader asks worker 0 first, and batch `start` comes first: worker w plays the role of the worker whose
        # batches are the global batches k with k = role (mod workers).
        role = (worker + self.start) % self.workers
        # Global batch k is the k-th batch of every rank, each from role k mod workers: numbered so, the slots take
        # their shards from the shard sequence in the order training reads them.
        slot = role * self.world + self.rank
        done = -(-(self.start - role) // self.workers) if self.start > role else 0
        for raw in _batched(self._shuffled(slot, done * self.batch_size), self.batch_size):
            samples = [self.dataset.decode(record) for record in raw]
            yield (torch.stack([s["z"] for s in samples]), torch.tensor([s["label"] for s in samples]),
                   torch.stack([s["image"] for s in samples]))

    def _shuffled(self, slot: int, emitted: int) -> Iterator[dict]:
        """The slot's records through its seeded shuffle buffer, less the first `emitted` it gives out. Which
        place each draw frees depends on the count of records alone, so the draws replayed on positions tell which
        records the buffer still holds, and the records given out before need not be read."""
        rng = random.Random(f"{self.seed}:{slot}")
        held = _replayed(self.buffer, emitted, rng)
        records = self._records(slot, sorted(held), self.buffer + emitted)
        found = dict(itertools.islice(records, self.buffer))  # every held position comes before the tail
        yield from _drained([found[position] for position in held], (record for _, record in records), rng)

    def _records(self, slot: int, wanted: list[int], tail: int) -> Iterator[tuple[int, dict]]:
        """(position, record) of the slot's records at the `wanted` positions (ascending, all before `tail`),
        then of every record from `tail` on; a shard is read only as far as they need."""
        slots, kept, start = self.world * self.workers, set(wanted), 0
        for url in itertools.islice(_shard_sequence(self.dataset.urls, self.seed), slot, None, slots):
            end = start + self.sizes[Path(url).name]
            needed = end - start if end > tail else _needed(wanted, start, end)
            for position, record in enumerate(itertools.islice(self.dataset.records([url]), needed), start):
                if position >= tail or position in kept:
                    yield position, record
            start = end


def _shard_sequence(urls: tuple[str, ...], seed: int) -> Iterator[str]:
    """The shards, in a seeded permutation per epoch, epoch after epoch without end."""
    for epoch in itertools.count():
        order = list(urls)
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        yield from order


def _replayed(size: int, emitted: int, rng: random.Random) -> list[int]:
    """The positions of the records that a shuffle buffer of `size` holds once it has given out `emitted` records,
    in buffer order, with `rng` drawn as far as the buffer would have drawn it."""
    held = list(range(size))
    for position in range(size, size + emitted):
        held[rng.randrange(size)] = position
    return held


def _drained(held: list, items: Iterator, rng: random.Random) -> Iterator:
    """A full shuffle buffer: give out a random held item for each that comes in, which takes its place."""
    for item in items:
        i = rng.randrange(len(held))
        yield held[i]
        held[i] = item


def _needed(wanted: list[int], start: int, end: int) -> int:
    """How many records of the shard at positions [start, end) to read to reach its last wanted one (0: none)."""
    last = bisect.bisect_left(wanted, end) - 1
    return wanted[last] + 1 - start if last >= 0 and wanted[last] >= start else 0


def _batched(items: Iterator, size: int) -> Iterator[list]:
    while True:
        batch = list(itertools.islice(items, size))
        if len(batch) < size:
            return
        yield batch


def _one_thread(_: int) -> None:
    # A loader worker decodes; intra-op threads would only fight the training process for its cores.
    torch.set_num_threads(1)


class StreamedSamples:
    """Teacher samples of an opened dataset, read as training goes (`batches`)."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu", workers: int = 1, buffer: int = 2000):
        self.dataset, self.device, self.workers, self.buffer = dataset, torch.device(device), workers, buffer
        self.value_range = dataset.value_range
        slots = distributed.rank_and_world()[1] * max(workers, 1)
        if len(dataset.urls) < slots:
            raise ValueError(f"{dataset.directory}: {len(dataset.urls)} shard(s) for {slots} stream slot(s) (ranks x "
                             f"loader_workers); allowed: at least one shard per slot: lower train.loader_workers "
                             f"or write smaller shards")

    def __len__(self) -> int:
        return self.dataset.num_samples

    def class_mean_images(self) -> torch.Tensor:
        """(num_classes, C, H, W) mean image per class in 0..255 units, as stored with the dataset."""
        return self.dataset.class_means()

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Endless (z, y, images) batches of this rank's share of batch_size, from global batch `start` on."""
        distributed.check_divisible(batch_size)
        per_rank = batch_size // distributed.rank_and_world()[1]
        stream = ShardStream(self.dataset, per_rank, seed, self.buffer, self.workers, start)
        cuda = self.device.type == "cuda"
        loader = DataLoader(stream, batch_size=None, num_workers=self.workers, pin_memory=cuda,
                            worker_init_fn=_one_thread if self.workers else None)
        for z, y, images in loader:
            images = decode_images(images.to(self.device, non_blocking=cuda), self.value_range)
            yield (z.float().to(self.device, non_blocking=cuda), y.to(self.device, non_blocking=cuda),
                   images.contiguous(memory_format=torch.channels_last))
