"""Counterfactual composition: x = m * f + (1 - m) * b, each mechanism with its own noise and its own class.

A mechanism is anything that maps (z, y) to an image: a teacher's (`Teacher.mechanisms()`) or a student
generator. Teacher and student counterfactuals are therefore drawn by the very same code from the very same
inputs, and differ only in the networks.
"""

from __future__ import annotations

import torch

from skdcgn.counterfactuals.inputs import cyclic_shift
from skdcgn.counterfactuals.masks import change_masks
from skdcgn.settings.compose import MaskChanges
from skdcgn.teachers.base import Mechanism

COMPOSITE_RANGE = (-1.0, 1.0)


def compose(mask: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the CGN paper; the 1-channel mask broadcasts over the colour channels."""
    return mask * foreground + (1.0 - mask) * background


@torch.no_grad()
def render(mechanisms: dict[str, Mechanism], inputs: dict, start: int, stop: int,
           shifts: dict[str, torch.Tensor] | None = None, changes: MaskChanges = MaskChanges(),
           draws: dict[str, torch.Tensor] | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Composites for rows start:stop of `inputs` (float, in [-1, 1], on the CPU): the mechanisms run on `device`
    (in float32: what they make is quantised and stored), textures are shifted by `shifts` and masks changed by
    `changes` with the rows of `draws` (counterfactuals.masks)."""
    parts = {im: mechanisms[im](z[start:stop].to(device), y[start:stop].to(device)).float().cpu()
             for im, (z, y) in inputs.items()}
    for im, shift in (shifts or {}).items():
        parts[im] = cyclic_shift(parts[im], shift[start:stop])
    mask = change_masks(parts["shape"], changes, {name: d[start:stop] for name, d in (draws or {}).items()})
    return compose(mask, parts["texture"], parts["background"])


def render_all(mechanisms: dict[str, Mechanism], inputs: dict, chunk: int = 100,
               shifts: dict[str, torch.Tensor] | None = None, changes: MaskChanges = MaskChanges(),
               device: torch.device | str = "cpu") -> torch.Tensor:
    """All composites of `inputs`; `changes` without random draws only (the teacher's denoised masks). Chunks of
    100: on a CPU, larger batches' activations outgrow the cache and the reused heap (docs/pipeline.md: batch
    sizes on a CPU) and take up to twice as long, for the same bytes."""
    if changes.drawn:
        raise ValueError("render_all takes no per-counterfactual mask draws; use render with draws")
    n = len(inputs["shape"][1])
    return torch.cat([render(mechanisms, inputs, i, min(i + chunk, n), shifts, changes, device=device)
                      for i in range(0, n, chunk)])
