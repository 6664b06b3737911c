"""Counterfactual composition: x = m * f + (1 - m) * b, each mechanism with its own noise and its own class.

A mechanism is anything that maps (z, y) to an image: a teacher head (`functools.partial(teacher, im)`) or a
student generator. Teacher and student counterfactuals are therefore drawn by the very same code from the
very same inputs, and differ only in the networks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from skdcgn import IMS
from skdcgn.grids import save_grid
from skdcgn.masks import MaskChanges, change_masks, draw_mask_changes
from skdcgn.progress import progress
from skdcgn.seeds import generator
from skdcgn.shard_writer import writing_dataset
from skdcgn.students import load_students

Mechanism = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COMPOSITE_RANGE = (-1.0, 1.0)
# How textures are moved before composition. `cyclic`: the CGN's "shuffler" (a random 2x2 tiling, then a random
# crop of the image size), which is exactly a random cyclic shift per texture; `none` keeps them in place.
TEXTURE_SHIFTS = ("none", "cyclic")
SHIFTED_IMS = ("texture", "background")


def compose(mask: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Eq. 1 of the CGN paper; the 1-channel mask broadcasts over the colour channels."""
    return mask * foreground + (1.0 - mask) * background


def draw_inputs(n: int, z_dims: dict[str, int], num_classes: int, generator: torch.Generator,
                factual: bool = False, per_shape: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-IM (z, y). Counterfactual: every IM draws its own class. Factual: all follow the shape's class.
    `per_shape` > 1: each shape (z and class) is drawn once and repeated over that many consecutive rows, each
    with its own texture and background (the CGN's counterfactuals per shape)."""
    shapes = -(-n // per_shape)
    y = torch.randint(num_classes, (shapes,), generator=generator)
    z = torch.randn(shapes, z_dims["shape"], generator=generator)
    inputs = {"shape": (z.repeat_interleave(per_shape, 0)[:n], y.repeat_interleave(per_shape)[:n])}
    for im in IMS[1:]:
        y = inputs["shape"][1] if factual else torch.randint(num_classes, (n,), generator=generator)
        inputs[im] = (torch.randn(n, z_dims[im], generator=generator), y)
    return inputs


def counterfactual_inputs(z_dims: dict[str, int], num_classes: int, n: int, seed: int, per_shape: int = 1) -> dict:
    """A run's counterfactual inputs: students and teacher draw theirs from this one stream, so they are equal."""
    return draw_inputs(n, z_dims, num_classes, generator(seed, "counterfactuals"), per_shape=per_shape)


def counterfactual_shifts(n: int, image_size: int, seed: int, mode: str) -> dict[str, torch.Tensor]:
    """Per-texture (rows, columns) shifts, (n, 2) each, from their own stream: equal for teacher and students,
    and turning them on or off leaves the noise and classes unchanged. Empty for mode `none`."""
    if mode not in TEXTURE_SHIFTS:
        raise ValueError(f"unknown texture shift {mode!r}; allowed: {', '.join(TEXTURE_SHIFTS)}")
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


@torch.no_grad()
def render(mechanisms: dict[str, Mechanism], inputs: dict, start: int, stop: int,
           shifts: dict[str, torch.Tensor] | None = None, changes: MaskChanges = MaskChanges(),
           draws: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Composites for rows start:stop of `inputs` (float, in [-1, 1], on the CPU), textures shifted by `shifts`,
    masks changed by `changes` with the rows of `draws` (skdcgn.masks)."""
    parts = {im: mechanisms[im](z[start:stop], y[start:stop]).float().cpu() for im, (z, y) in inputs.items()}
    for im, shift in (shifts or {}).items():
        parts[im] = cyclic_shift(parts[im], shift[start:stop])
    mask = change_masks(parts["shape"], changes, {name: d[start:stop] for name, d in (draws or {}).items()})
    return compose(mask, parts["texture"], parts["background"])


def render_all(mechanisms: dict[str, Mechanism], inputs: dict, chunk: int = 1000,
               shifts: dict[str, torch.Tensor] | None = None, changes: MaskChanges = MaskChanges()) -> torch.Tensor:
    """All composites of `inputs`; `changes` without random draws only (the teacher's denoised masks)."""
    if changes.drawn:
        raise ValueError("render_all takes no per-counterfactual mask draws; use render with draws")
    n = len(inputs["shape"][1])
    return torch.cat([render(mechanisms, inputs, i, min(i + chunk, n), shifts, changes)
                      for i in range(0, n, chunk)])


def write_counterfactuals(directory: Path, mechanisms: dict[str, Mechanism], inputs: dict, shard_size: int,
                          info: dict, chunk: int = 1000, advance=None,
                          shifts: dict[str, torch.Tensor] | None = None, writers: int = 0,
                          changes: MaskChanges = MaskChanges(), draws: dict[str, torch.Tensor] | None = None) -> None:
    """Shards of composites labelled with the shape's class; every IM's z, class and shift, and the mask's
    change, travel with the image."""
    n = len(inputs["shape"][1])
    shifts, draws = shifts or {}, draws or {}
    with writing_dataset(directory, shard_size=shard_size, value_range=COMPOSITE_RANGE, info=info,
                         writers=writers) as writer:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            arrays = {f"z_{im}": z[start:stop] for im, (z, _) in inputs.items()}
            arrays.update({f"y_{im}": y[start:stop] for im, (_, y) in inputs.items()})
            arrays.update({f"shift_{im}": shift[start:stop] for im, shift in shifts.items()})
            arrays.update({name: drawn[start:stop] for name, drawn in draws.items()})
            writer.add_batch([f"{i:08d}" for i in range(start, stop)], inputs["shape"][1][start:stop],
                             render(mechanisms, inputs, start, stop, shifts, changes, draws), arrays)
            if advance:
                advance(stop - start)


def sample_students(students_dir: Path, n: int, seed: int, *, shards: Path | None = None, grid: Path | None = None,
                    shard_size: int = 5000, batch_size: int = 1000, grid_columns: int = 10,
                    texture_shift: str = "none", writers: int = 0, changes: MaskChanges = MaskChanges(),
                    per_shape: int = 1) -> None:
    """Counterfactuals from a trained set of students into shards and/or a PNG grid (compose stage and CLI);
    `writers` processes encode the shards while the students run; `changes` alters the masks first."""
    students, teacher = load_students(students_dir)
    z_dims = {im: student.config["z_dim"] for im, student in students.items()}
    inputs = counterfactual_inputs(z_dims, students["shape"].num_classes, n, seed, per_shape)
    shifts = counterfactual_shifts(n, teacher["image_size"], seed, texture_shift)
    draws = draw_mask_changes(n, seed, changes)
    if shards:
        info = {"teacher": teacher, "texture_shift": texture_shift, "per_shape": per_shape}
        if changes.active:
            info["mask_changes"] = dataclasses.asdict(changes)
        with progress("compose", n, every=batch_size) as advance:
            write_counterfactuals(shards, students, inputs, shard_size, info, batch_size, advance, shifts, writers,
                                  changes, draws)
    if grid:
        images = render(students, inputs, 0, min(n, grid_columns**2), shifts, changes, draws)
        save_grid(grid, list(images.split(grid_columns)), COMPOSITE_RANGE)
