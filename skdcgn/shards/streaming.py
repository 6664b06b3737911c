"""Teacher samples streamed from their shards while a student trains: memory holds a shuffle buffer and a few
decoded batches, never the dataset. For datasets too large to hold (ImageNet-size); MNIST-size data trains as
fast from memory (`train.data: memory`, the default; BENCHMARKS.md).

The order depends on the seed, the number of ranks and the number of loader workers, nothing else. The shards
are read as one endless sequence, a permutation seeded by (seed, e) for each epoch e, end to end; item i of it goes
to slot i mod slots (slot = worker x ranks + rank: the order in which training takes their batches). So the slots
move through the epochs together, whether or not the shards divide evenly over them, and every rank gets as many
batches as it asks for. A slot reads its shards through a seeded shuffle buffer and groups the records into
batches of batch_size / ranks. Only then are they decoded: a resumed run skips the batches it has trained on without
decoding them. The DataLoader takes one batch from each worker in turn. The class means come with the dataset
(the writer summed them), so nothing reads the shards but training itself.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from skdcgn.shards.format import decode_images
from skdcgn.shards.reading import Dataset
from skdcgn.training import distributed


class ShardStream(IterableDataset):
    """Decoded batches (z, y, uint8 images) of one rank, from `start` (global batch number) on."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, buffer: int, workers: int, start: int):
        self.dataset, self.batch_size, self.seed, self.buffer = dataset, batch_size, seed, buffer
        self.workers, self.start = max(workers, 1), start
        self.rank, self.world = distributed.rank_and_world()  # taken here: workers do not join the process group

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info else 0
        # The loader asks worker 0 first, and batch `start` comes first: worker w plays the role of the worker whose
        # batches are the global batches k with k = role (mod workers).
        role = (worker + self.start) % self.workers
        # Global batch k is the k-th batch of every rank, each from role k mod workers: numbered so, the slots take
        # their shards from the shard sequence in the order training reads them.
        slot = role * self.world + self.rank
        batches = _batched(_shuffled(self._records(slot), self.buffer, random.Random(f"{self.seed}:{slot}")),
                           self.batch_size)
        done = -(-(self.start - role) // self.workers) if self.start > role else 0
        for raw in itertools.islice(batches, done, None):
            samples = [self.dataset.decode(record) for record in raw]
            yield (torch.stack([s["z"] for s in samples]), torch.tensor([s["label"] for s in samples]),
                   torch.stack([s["image"] for s in samples]))

    def _records(self, slot: int) -> Iterator[dict]:
        slots = self.world * self.workers
        for url in itertools.islice(_shard_sequence(self.dataset.urls, self.seed), slot, None, slots):
            yield from self.dataset.records([url])


def _shard_sequence(urls: tuple[str, ...], seed: int) -> Iterator[str]:
    """The shards, in a seeded permutation per epoch, epoch after epoch without end."""
    for epoch in itertools.count():
        order = list(urls)
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        yield from order


def _shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """A shuffle buffer: hold `size` items, give out a random one for each that comes in."""
    held = []
    for item in items:
        if len(held) < size:
            held.append(item)
            continue
        i = rng.randrange(size)
        yield held[i]
        held[i] = item


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
