"""`skdcgn`: what users do outside DVC, one command per action."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.command()
def sample(
    students: Path = typer.Option(Path("data/students"), help="Folder with shape/, texture/, background/ students."),
    n: int = typer.Option(100, min=1, help="How many counterfactuals."),
    seed: int = typer.Option(0, min=0, help="Seed of the counterfactual inputs."),
    grid: Path = typer.Option(None, help="Write a PNG grid of the first columns**2 counterfactuals here."),
    shards: Path = typer.Option(None, help="Write all n counterfactuals as WebDataset shards into this folder."),
    columns: int = typer.Option(10, min=1, help="Grid columns (and rows)."),
    shard_size: int = typer.Option(5000, min=1, help="Samples per shard."),
    texture_shift: str = typer.Option("none", help="none | cyclic: the CGN's random cyclic shift of textures."),
) -> None:
    """Draw counterfactuals from trained students: each mechanism with its own noise and class."""
    if not grid and not shards:
        _fail("give --grid PATH and/or --shards DIR: nothing to write")
    from skdcgn.counterfactuals.from_students import sample_students
    from skdcgn.settings import ComposeSettings
    from skdcgn.utils.device import default_device

    try:
        settings = ComposeSettings(n=n, shard_size=shard_size, grid_columns=columns, texture_shift=texture_shift)
        sample_students(students, settings, seed, shards=shards, grid=grid, device=default_device())
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"wrote {n} counterfactuals" + (f" to {shards}" if shards else "") + (f", grid {grid}" if grid else ""))


@app.command("teacher-grid")
def teacher_grid(
    out: Path = typer.Argument(..., help="PNG file to write."),
    kind: str = typer.Option("synthetic", help="Teacher kind."),
    checkpoint: Path = typer.Option(None, help="cgn-mnist: the teacher's .pth state dict."),
    variant: str = typer.Option("double_colored", help="cgn-mnist: the MNIST variant the teacher mirrors."),
    columns: int = typer.Option(10, min=1, help="Noise draws per class (one row per class)."),
    seed: int = typer.Option(0, min=0, help="Seed of the noise."),
    scale: int = typer.Option(4, min=1, help="Pixel upscaling of the PNG."),
) -> None:
    """Look at a teacher: one row per class, factual composites (texture and background follow the digit)."""
    import torch

    from skdcgn.counterfactuals.composite import COMPOSITE_RANGE, render_all
    from skdcgn.settings import TeacherSettings
    from skdcgn.teachers.noise import draw_noise
    from skdcgn.teachers.registry import make_teacher
    from skdcgn.utils.grids import save_grid

    try:
        settings = TeacherSettings.parse({"kind": kind, "cgn-mnist": {"checkpoint": str(checkpoint or ""),
                                                                       "variant": variant}}, "teacher")
        teacher = make_teacher(settings)
    except ValueError as error:
        _fail(str(error))
    labels = torch.arange(teacher.num_classes).repeat_interleave(columns)
    generator = torch.Generator().manual_seed(seed)
    inputs = {im: (draw_noise(len(labels), dim, generator, teacher.truncation), labels)
              for im, dim in teacher.z_dims.items()}
    images = render_all(teacher.mechanisms(), inputs)
    save_grid(out, list(images.split(columns)), COMPOSITE_RANGE, scale=scale)
    typer.echo(f"wrote {out}")


@app.command()
def validate(directories: list[Path] = typer.Argument(..., help="Shard dataset folders (with dataset.json).")) -> None:
    """Check shards against their manifest: count, bytes, sha256, tar end blocks, every sample's members."""
    from skdcgn.shards.format import ShardError
    from skdcgn.shards.validation import validate as check

    for directory in directories:
        try:
            meta = check(directory)
        except ShardError as error:
            _fail(str(error))
        typer.echo(f"ok {directory}: {meta['num_samples']} samples")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
