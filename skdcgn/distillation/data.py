"""Teacher samples as the loop takes them: batches of (z, y, image), row i always one and the same sample.

`PairedSamples` holds a decoded dataset in memory (MNIST-size); shards.streaming.StreamedSamples reads one as
training goes (ImageNet-size). Both give endless seeded batches from any start, so a resumed run picks up where
it stopped, and the class means the student starts from.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from skdcgn.metrics.baseline import ClassMeans
from skdcgn.settings.distill import TrainSettings
from skdcgn.shards.format import decode_images
from skdcgn.shards.reading import Dataset
from skdcgn.shards.streaming import StreamedSamples
from skdcgn.training import distributed

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # z, y, images


class TrainingData(Protocol):
    """What the loop needs of teacher samples: PairedSamples or shards.streaming.StreamedSamples."""

    device: torch.device
    value_range: tuple[float, float]

    def class_mean_images(self) -> torch.Tensor: ...

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[Batch]: ...


@dataclass
class PairedSamples:
    """Teacher samples kept as they were stored: row i of z, y and images is one and the same sample."""

    z: torch.Tensor
    y: torch.Tensor
    images: torch.Tensor  # uint8 (N, C, H, W): decoded to floats per batch
    value_range: tuple[float, float]
    class_means: torch.Tensor | None = None  # (K, C, H, W) in 0..255; summed from the images when not given

    @classmethod
    def from_dataset(cls, dataset: Dataset, device: torch.device | str = "cpu") -> "PairedSamples":
        loaded = dataset.load()
        means = dataset.class_means() if dataset.meta.get("class_means") else None
        return cls(loaded["z"].float().to(device), loaded["label"].to(device), loaded["image"].to(device),
                   dataset.value_range, means)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.z.device

    def class_mean_images(self) -> torch.Tensor:
        """(num_classes, C, H, W) mean image per class in 0..255 units, on the CPU."""
        if self.class_means is None:
            self.class_means = ClassMeans(int(self.y.max()) + 1).add(self.images.cpu(), self.y.cpu()).means()
        return self.class_means

    def batch(self, index: torch.Tensor) -> Batch:
        images = decode_images(self.images[index], self.value_range)
        return self.z[index], self.y[index], images.contiguous(memory_format=torch.channels_last)

    def batches(self, batch_size: int, seed: int, start: int) -> Iterator[Batch]:
        """Endless (z, y, images) batches of this rank's share, from batch `start` on: the order comes from the
        seed alone, so skipping the batches already trained on puts a resumed run where it was."""
        indices = batch_indices(len(self), batch_size, seed, self.device)
        for index in itertools.islice(indices, start, None):
            yield self.batch(distributed.rank_share(index))

    def chunks(self, size: int) -> Iterator[Batch]:
        """(z, y, uint8 images) in order, `size` at a time (how held-out fidelity reads a set)."""
        for start in range(0, len(self), size):
            yield self.z[start:start + size], self.y[start:start + size], self.images[start:start + size]


def batch_indices(num_samples: int, batch_size: int, seed: int, device) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatches, a fresh permutation per epoch, from the seed alone."""
    if num_samples < batch_size:
        raise ValueError(f"{num_samples} training samples is fewer than one batch of {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_samples, generator=generator)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start:start + batch_size].to(device)


def training_data(dataset: Dataset, settings: TrainSettings, device: torch.device) -> TrainingData:
    """`train.data` says where batches come from: decoded once into memory, or streamed from the shards."""
    if settings.data == "stream":
        return StreamedSamples(dataset, device, settings.loader_workers, settings.shuffle_buffer)
    return PairedSamples.from_dataset(dataset, device)
