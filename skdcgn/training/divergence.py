"""Stopping a run that diverges, at the step it happened, instead of training on garbage for hours."""

from __future__ import annotations

import math

import torch
from torch import nn


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or weights, or an exploding discriminator: training stopped, naming the step."""


def check_window(means: dict[str, float], step: int, max_disc_logit: float, checkpoint: str) -> None:
    """A log window's mean losses: a non-finite one, or a mean |discriminator logit| over `max_disc_logit`
    (0 = no limit), stops training. `checkpoint` says what was kept (TrainingState.describe)."""
    bad = [name for name, value in means.items() if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(f"non-finite {', '.join(bad)} at step {step}: lower lr or set grad_clip; {checkpoint}")
    logit = means.get("disc/abs_logit", 0.0)
    if max_disc_logit and logit > max_disc_logit:
        raise TrainingDiverged(f"discriminator exploding at step {step}: mean |logit| {logit:.4g} > max_disc_logit "
                               f"{max_disc_logit:g}; lower lr or set grad_clip; {checkpoint}")


def check_weights(networks: dict[str, nn.Module], step: int, checkpoint: str) -> None:
    """Before a checkpoint: an update can make weights non-finite while the losses, computed before it, are still
    finite, and such a state must not be saved as the last good one. Every rank holds the same weights, so every
    rank stops alike."""
    bad = [name for name, network in networks.items()
           if not all(torch.isfinite(weight).all() for weight in network.parameters())]
    if bad:
        raise TrainingDiverged(f"non-finite {', '.join(bad)} weights at step {step}: lower lr or set grad_clip; "
                               f"{checkpoint}")
