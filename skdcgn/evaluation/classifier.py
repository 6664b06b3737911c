"""Training and testing a classifier on images, by the CGN paper's protocol (Adadelta, StepLR per epoch).

Generic: the model comes from a factory (num_classes -> a fresh module; the MNIST domain's is
mnist.digit_cnn.DigitCNN), the settings are `evaluate`'s. Images are (N, 3, H, W), either float in [-1, 1] or
uint8 in 0..255; uint8 is converted one batch at a time on the device, so a 100k-image training set stays at
one byte per value.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from skdcgn.settings.evaluate import EvaluateSettings
from skdcgn.shards.format import decode_images
from skdcgn.utils.device import training_autocast

ClassifierFactory = Callable[[int], nn.Module]  # number of classes -> a fresh, untrained model


def _as_input(batch: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch as float32 in [-1, 1] on device, decoding uint8 0..255 on the way."""
    batch = batch.to(device)
    return decode_images(batch, (-1.0, 1.0)) if batch.dtype == torch.uint8 else batch.float()


def train_classifier(images: torch.Tensor, labels: torch.Tensor, make_model: ClassifierFactory, num_classes: int,
                     settings: EvaluateSettings, seed: int, device: torch.device | str = "cpu",
                     on_epoch: Callable[[int, float], None] | None = None,
                     on_batch: Callable[[], None] | None = None) -> nn.Module:
    """Train a fresh model with cross-entropy (bf16 autocast on CUDA); returned in eval mode.

    `seed` fixes both the initial weights and the minibatch order, so on the CPU the same seed and inputs give
    bit-identical weights. on_epoch(epoch, mean_loss) is called after each epoch, epoch counted from 0, and
    on_batch() after each batch (progress within an epoch)."""
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(f"need a non-empty set with one label per image, got {images.shape[0]} and {labels.shape[0]}")
    # A private RNG stream for the weights: seeding must not disturb the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model(num_classes).to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=settings.gamma)
    order = torch.Generator().manual_seed(seed)
    labels = labels.to(torch.long)
    autocast = training_autocast(torch.device(device))
    model.train()
    for epoch in range(settings.epochs):
        # Summed on the device: a float per batch would make a GPU wait for every batch.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for idx in torch.randperm(images.shape[0], generator=order).split(settings.batch_size):
            with autocast:
                loss = F.cross_entropy(model(_as_input(images[idx], device)).float(), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * idx.numel()
            if on_batch is not None:
                on_batch()
        scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, float(loss_sum) / images.shape[0])
    return model.eval()


@torch.no_grad()
def score_classifier(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    batch_size: int = 512) -> tuple[float, torch.Tensor]:
    """Accuracy and confusion matrix (rows true class, columns predicted, int64) of model, put in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    for start in range(0, images.shape[0], batch_size):
        predicted = model(_as_input(images[start:start + batch_size], device)).argmax(1).cpu()
        true = labels[start:start + batch_size].to(torch.long).cpu()
        confusion += torch.bincount(true * num_classes + predicted, minlength=num_classes * num_classes)
    confusion = confusion.view(num_classes, num_classes)
    return confusion.trace().item() / max(images.shape[0], 1), confusion
