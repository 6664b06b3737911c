"""The class-mean baseline: predict each class's mean teacher image. A student has to beat it to have learned
anything beyond its class (a lookup table reaches it without learning)."""

from __future__ import annotations

import torch

# int32 sums of uint8 values stay exact up to this many samples of one class.
MAX_PER_CLASS = (2**31 - 1) // 255


class ClassMeans:
    """Per-class sums of uint8 images as exact integers, added batch by batch: the means do not depend on how
    the samples were batched or ordered, and the memory on the number of classes, not of samples."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(num_classes, dtype=torch.int64)

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> "ClassMeans":
        """uint8 images (B, C, H, W) with their classes (B,)."""
        if images.dtype != torch.uint8 or labels.shape != images.shape[:1]:
            raise ValueError(f"need uint8 images with one label each, got {images.dtype} {tuple(images.shape)} and "
                             f"{tuple(labels.shape)} labels")
        labels = labels.to("cpu", torch.long)
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f"labels {int(labels.min())}..{int(labels.max())} outside 0..{self.num_classes - 1}")
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, *images.shape[1:], dtype=torch.int32)
        self.sums.index_add_(0, labels, images.to("cpu", torch.int32))
        self.counts += torch.bincount(labels, minlength=self.num_classes)
        if int(self.counts.max()) > MAX_PER_CLASS:
            raise ValueError(f"more than {MAX_PER_CLASS} samples of one class: the int32 sums would overflow")
        return self

    def means(self) -> torch.Tensor:
        """(num_classes, C, H, W) float32 in 0..255 units; every class must have a sample."""
        empty = (self.counts == 0).nonzero()
        if self.sums is None or len(empty):
            raise ValueError(f"class {int(empty[0]) if len(empty) else 0} has no sample, so it has no mean image")
        return (self.sums.double() / self.counts.double().view(-1, *[1] * (self.sums.dim() - 1))).float()
