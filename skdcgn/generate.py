"""Teacher samples for one mechanism: (z, y) -> teacher image, stored together as shards."""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.shards import writing_dataset
from skdcgn.teachers.base import VALUE_RANGE, Teacher


def class_balanced_labels(per_class: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: every shard (and every prefix) holds all classes in equal measure."""
    return torch.arange(per_class * num_classes) % num_classes


def generate_samples(teacher: Teacher, im: str, directory: Path, per_class: int, generator: torch.Generator,
                     shard_size: int, batch_size: int, advance=None) -> None:
    labels = class_balanced_labels(per_class, teacher.num_classes)
    noise = torch.randn(len(labels), teacher.z_dims[im], generator=generator)
    info = {"im": im, "teacher": teacher.identity(), "teacher_parameters": teacher.num_parameters(im)}
    with writing_dataset(directory, shard_size=shard_size, value_range=VALUE_RANGE[im], info=info) as writer:
        for start in range(0, len(labels), batch_size):
            z, y = noise[start:start + batch_size], labels[start:start + batch_size]
            keys = [f"{i:08d}" for i in range(start, start + len(y))]
            writer.add_batch(keys, y, teacher(im, z, y), {"z": z})
            if advance:
                advance(len(y))
