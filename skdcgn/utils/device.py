"""Where the networks of a stage run, and at what precision.

CUDA when present, else the CPU. bf16 autocast only where rounding cannot reach a stored image: training
(distillation and the classifiers), never a forward pass whose output is quantised to 8 bits and stored
(teacher samples, counterfactuals) or measured (held-out fidelity), where bf16's 8-bit mantissa would move
pixels across a rounding boundary.
"""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def training_autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast for training on CUDA; a no-op elsewhere (CPU runs stay float32 and byte-repeatable)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda")
