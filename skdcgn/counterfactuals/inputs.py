"""What a counterfactual is drawn from: each mechanism's noise and class, and each texture's shift.

Every consumer draws from its own seeded stream (utils.seeds), so the students' counterfactuals (compose) and
the teacher's (reference) come from the very same inputs, and turning texture shifts or mask changes on leaves
the noise and classes as they were.
"""

from __future__ import annotations

import torch

from skdcgn.mechanisms import IMS
from skdcgn.teachers.noise import draw_noise
from skdcgn.utils.seeds import generator

# How textures are moved before composition. `cyclic`: the CGN's "shuffler" (a random 2x2 tiling, then a random
# crop of the image size), which is exactly a random cyclic shift per texture; `none` keeps them in place.
SHIFTED_IMS = ("texture", "background")


def draw_inputs(n: int, z_dims: dict[str, int], num_classes: int, generator: torch.Generator,
                factual: bool = False, per_shape: int = 1,
                truncation: float | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-IM (z, y), z as the teacher takes it (`truncation`: skdcgn.teachers.noise). Counterfactual: every IM
    draws its own class. Factual: all follow the shape's class.
    `per_shape` > 1: each shape (z and class) is drawn once and repeated over that many consecutive rows, each
    with its own texture and background (the CGN's counterfactuals per shape)."""
    shapes = -(-n // per_shape)
    y = torch.randint(num_classes, (shapes,), generator=generator)
    z = draw_noise(shapes, z_dims["shape"], generator, truncation)
    inputs = {"shape": (z.repeat_interleave(per_shape, 0)[:n], y.repeat_interleave(per_shape)[:n])}
    for im in IMS[1:]:
        y = inputs["shape"][1] if factual else torch.randint(num_classes, (n,), generator=generator)
        inputs[im] = (draw_noise(n, z_dims[im], generator, truncation), y)
    return inputs


def counterfactual_inputs(z_dims: dict[str, int], num_classes: int, n: int, seed: int, per_shape: int = 1,
                          truncation: float | None = None) -> dict:
    """A run's counterfactual inputs: students and teacher draw theirs from this one stream, so they are equal."""
    return draw_inputs(n, z_dims, num_classes, generator(seed, "counterfactuals"), per_shape=per_shape,
                       truncation=truncation)


def counterfactual_shifts(n: int, image_size: int, seed: int, mode: str) -> dict[str, torch.Tensor]:
    """Per-texture (rows, columns) shifts, (n, 2) each, from their own stream: equal for teacher and students.
    Empty for mode `none` (settings.ComposeSettings.texture_shift)."""
    if mode == "none":
        return {}
    rng = generator(seed, "counterfactuals", "shift")
    return {im: torch.randint(image_size, (n, 2), generator=rng) for im in SHIFTED_IMS}


def cyclic_shift(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """torch.roll of each image (B, C, H, W) by its own (rows, columns) shift (B, 2), in one gather."""
    _, _, height, width = images.shape
    rows = (torch.arange(height) - shifts[:, :1]) % height  # (B, H): source row of each output row
    cols = (torch.arange(width) - shifts[:, 1:]) % width
    batch = torch.arange(len(images))[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
