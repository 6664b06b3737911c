"""The CGN paper's small digit CNN and its training protocol (Adadelta, lr 1.0, StepLR gamma 0.7 per epoch).

It judges the counterfactual images: trained on them, it should classify digits by shape, not by colour.
Images are (N, 3, H, W), either float in [-1, 1] or uint8 in 0..255; uint8 is converted one batch at a time so
that a 100k-image training set stays at one byte per value.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from skdcgn.shards import decode_images


class DigitCNN(nn.Module):
    """BatchNorm on the input, four unpadded convolutions, global average pooling, linear: 67,760 parameters.

    No padding, as in the CGN code: a 32x32 input shrinks 28 -> 14 (pool) -> 12 -> 5 -> 3 before the average
    pool, and 28x28 works too (24 -> 12 -> 10 -> 4 -> 2).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.BatchNorm2d(3),  # standardises whatever colour statistics the training images have
            nn.Conv2d(3, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def _as_input(batch: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch as float32 in [-1, 1] on device, decoding uint8 0..255 on the way."""
    if batch.dtype == torch.uint8:
        batch = decode_images(batch, (-1.0, 1.0))
    return batch.to(device, torch.float32)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1.0,
    gamma: float = 0.7,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, float], None] | None = None,
) -> DigitCNN:
    """Train a fresh DigitCNN with cross-entropy; returned in eval mode.

    seed fixes both the initial weights and the minibatch order, so on the CPU the same seed and inputs give
    bit-identical weights. on_epoch(epoch, mean_loss) is called after each epoch, epoch counted from 0.
    """
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(f"need a non-empty set with one label per image, got {images.shape[0]} and {labels.shape[0]}")
    # A private RNG stream for the weights: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitCNN().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma)
    order = torch.Generator().manual_seed(seed)
    labels = labels.to(torch.long)
    model.train()
    for epoch in range(epochs):
        loss_sum = 0.0
        for idx in torch.randperm(images.shape[0], generator=order).split(batch_size):
            target = labels[idx].to(device)
            loss = F.cross_entropy(model(_as_input(images[idx], device)), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * idx.numel()
        scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, loss_sum / images.shape[0])
    return model.eval()


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 512, num_classes: int = 10
) -> tuple[float, torch.Tensor]:
    """Accuracy and confusion matrix (rows true class, columns predicted, int64) of model, put in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    for start in range(0, images.shape[0], batch_size):
        predicted = model(_as_input(images[start : start + batch_size], device)).argmax(1).cpu()
        true = labels[start : start + batch_size].to(torch.long).cpu()
        confusion += torch.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    confusion = confusion.view(num_classes, num_classes)
    return confusion.trace().item() / max(images.shape[0], 1), confusion
