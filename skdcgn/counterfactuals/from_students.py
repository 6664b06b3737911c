"""Counterfactuals from a trained set of students, into shards and a PNG grid (stage compose, `skdcgn sample`)."""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.counterfactuals.composite import COMPOSITE_RANGE, render
from skdcgn.counterfactuals.inputs import counterfactual_inputs, counterfactual_shifts
from skdcgn.counterfactuals.masks import draw_mask_changes
from skdcgn.distillation.checkpoints import load_students
from skdcgn.settings.compose import ComposeSettings, MaskChanges
from skdcgn.shards.writer import writing_dataset
from skdcgn.teachers.base import Mechanism
from skdcgn.utils.grids import save_grid
from skdcgn.utils.progress import progress


def write_counterfactuals(directory: Path, mechanisms: dict[str, Mechanism], inputs: dict, shard_size: int,
                          info: dict, chunk: int, advance=None,
                          shifts: dict[str, torch.Tensor] | None = None, writers: int = 0,
                          changes: MaskChanges = MaskChanges(), draws: dict[str, torch.Tensor] | None = None,
                          device: torch.device | str = "cpu") -> None:
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
                             render(mechanisms, inputs, start, stop, shifts, changes, draws, device), arrays)
            if advance:
                advance(stop - start)


def sample_students(students_dir: Path, settings: ComposeSettings, seed: int, *, shards: Path | None = None,
                    grid: Path | None = None, writers: int = 0, device: torch.device | str = "cpu",
                    classes: dict[str, int] | None = None) -> None:
    """`settings.n` counterfactuals of the students on `device`, as `settings` says (texture shifts, mask
    changes, counterfactuals per shape), into shards and/or the grid of the first grid_columns**2; `writers`
    processes encode the shards while the students run. `classes` fixes the class of some mechanisms (e.g.
    {"shape": 3, "texture": 7}); the others draw theirs, and all noise is what it would be without it."""
    students, teacher = load_students(students_dir, device)
    z_dims = {im: student.config["z_dim"] for im, student in students.items()}
    n, changes = settings.n, settings.mask_changes()
    num_classes = students["shape"].num_classes
    inputs = counterfactual_inputs(z_dims, num_classes, n, seed, settings.per_shape, teacher.get("truncation"))
    for im, label in (classes or {}).items():
        if not 0 <= label < num_classes:
            raise ValueError(f"{im} class {label}; allowed: 0 .. {num_classes - 1} (the students' classes)")
        inputs[im] = (inputs[im][0], torch.full_like(inputs[im][1], label))
    shifts = counterfactual_shifts(n, teacher["image_size"], seed, settings.texture_shift)
    draws = draw_mask_changes(n, seed, changes)
    if shards:
        info = {"teacher": teacher, "texture_shift": settings.texture_shift, "per_shape": settings.per_shape}
        if changes.active:
            info["mask_changes"] = changes.model_dump()
        with progress("compose", n, every=settings.batch_size) as advance:
            write_counterfactuals(shards, students, inputs, settings.shard_size, info, settings.batch_size, advance,
                                  shifts, writers, changes, draws, device)
    if grid:
        columns = settings.grid_columns
        images = render(students, inputs, 0, min(n, columns**2), shifts, changes, draws, device)
        save_grid(grid, list(images.split(columns)), COMPOSITE_RANGE)
