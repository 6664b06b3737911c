"""How faithful a student is, on teacher samples it never trained on, read chunk by chunk.

The held-out set is read from its shards at every evaluation (`ShardSamples`), so memory holds one chunk
whatever the set's size; decoding a few thousand images costs far less than the steps between evaluations.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import torch

from skdcgn.distillation.data import Batch
from skdcgn.distillation.students import StudentGenerator
from skdcgn.metrics.fidelity import Fidelity, images_per_chunk
from skdcgn.shards.format import decode_images
from skdcgn.shards.reading import Dataset


class HeldoutSamples(Protocol):
    value_range: tuple[float, float]

    def chunks(self, size: int) -> Iterator[Batch]: ...


class ShardSamples:
    """An opened dataset's samples in manifest order, `size` at a time, on a device; with `limit`, its first
    `limit` samples only (a teacher's samples cycle through the classes, so any prefix is class-balanced)."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu", limit: int | None = None):
        self.dataset, self.device, self.value_range = dataset, torch.device(device), dataset.value_range
        self.limit = dataset.num_samples if limit is None else min(limit, dataset.num_samples)

    def chunks(self, size: int) -> Iterator[Batch]:
        left = self.limit
        for chunk in self.dataset.chunks(min(size, left)):
            n = min(left, len(chunk["label"]))
            yield (chunk["z"][:n].float().to(self.device), chunk["label"][:n].to(self.device),
                   chunk["image"][:n].to(self.device))
            left -= n
            if not left:
                return


@torch.no_grad()
def heldout_fidelity(student: StudentGenerator, heldout: HeldoutSamples) -> dict[str, float]:
    """Fidelity of the student on held-out teacher samples, in eval mode (as it will be used), in float32."""
    was_training = student.training
    student.eval()
    meter = Fidelity(student.config["im"])
    size = student.config["image_size"]
    for z, y, images in heldout.chunks(images_per_chunk(size, size)):
        meter.update(student(z, y).float(), decode_images(images, heldout.value_range))
    student.train(was_training)
    return meter.result()


def baseline_fidelity(im: str, class_means: torch.Tensor, heldout: HeldoutSamples) -> dict[str, float]:
    """Fidelity of predicting each class's mean teacher image: what a lookup table reaches without learning."""
    meter = Fidelity(im)
    for _, y, images in heldout.chunks(images_per_chunk(*class_means.shape[2:])):
        meter.update(decode_images(class_means[y.cpu()].cpu(), heldout.value_range),
                     decode_images(images.cpu(), heldout.value_range))
    return meter.result()


def grid_samples(heldout: HeldoutSamples, per_class: int, total: int) -> Batch:
    """The first `per_class` samples of each class, up to `total`, in class order: a grid's rows show what the
    student gets right and where it blurs."""
    picked: dict[int, list] = {}
    for z, y, images in heldout.chunks(total):
        for i, label in enumerate(y.tolist()):
            if len(picked.setdefault(label, [])) < per_class:
                picked[label].append((z[i], y[i], images[i]))
    rows = [row for label in sorted(picked) for row in picked[label]][:total]
    return tuple(torch.stack(column) for column in zip(*rows))
