"""`skdcgn`: what users do outside DVC, one command per action."""

from __future__ import annotations

import subprocess
import sys
from enum import Enum
from importlib.metadata import version
from pathlib import Path
from typing import Optional

import typer

# Plain click output: a usage error is one "Error: ..." line, not a box that wraps it over several.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)
CLASS_HELP = "The {im}'s class for every counterfactual (default: each draws its own)."


class TextureShift(str, Enum):
    none = "none"
    cyclic = "cyclic"  # the CGN's random cyclic shift of each texture


class GridTeacher(str, Enum):
    synthetic = "synthetic"
    cgn_mnist = "cgn-mnist"


class MnistVariant(str, Enum):
    colored = "colored"
    double_colored = "double_colored"
    wildlife = "wildlife"


def _show_version(shown: bool) -> None:
    if shown:
        typer.echo(f"skdcgn {version('skdcgn')}")
        raise typer.Exit()


@app.callback()
def main(_: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                help="Print the version and exit.")) -> None:
    pass


@app.command()
def sample(
    students: Path = typer.Option(Path("data/students"), help="Folder with shape/, texture/, background/ students."),
    n: int = typer.Option(100, min=1, help="How many counterfactuals."),
    seed: int = typer.Option(0, min=0, help="Seed of the counterfactual inputs."),
    grid: Path = typer.Option(None, help="Write a PNG grid of the first columns**2 counterfactuals here."),
    shards: Path = typer.Option(None, help="Write all n counterfactuals as WebDataset shards into this folder."),
    columns: int = typer.Option(10, min=1, help="Grid columns (and rows)."),
    shard_size: int = typer.Option(5000, min=1, help="Samples per shard."),
    texture_shift: TextureShift = typer.Option(TextureShift.none, help="The CGN's random cyclic shift of textures."),
    shape_class: Optional[int] = typer.Option(None, min=0, help=CLASS_HELP.format(im="shape")),
    texture_class: Optional[int] = typer.Option(None, min=0, help=CLASS_HELP.format(im="texture")),
    background_class: Optional[int] = typer.Option(None, min=0, help=CLASS_HELP.format(im="background")),
    device: str = typer.Option("auto", help="Where the students run: auto (CUDA when present), cpu, cuda, cuda:1."),
) -> None:
    """Draw counterfactuals from trained students: each mechanism with its own noise and class.

    Digit 3 with the texture of 7 and the background of 1: --shape-class 3 --texture-class 7 --background-class 1.
    """
    if not grid and not shards:
        _fail("give --grid PATH and/or --shards DIR: nothing to write")
    from skdcgn.counterfactuals.from_students import sample_students
    from skdcgn.settings.compose import ComposeSettings

    classes = {im: label for im, label in (("shape", shape_class), ("texture", texture_class),
                                           ("background", background_class)) if label is not None}
    try:
        settings = ComposeSettings(n=n, shard_size=shard_size, grid_columns=columns,
                                   texture_shift=texture_shift.value)
        sample_students(students, settings, seed, shards=shards, grid=grid, device=_device(device), classes=classes)
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"wrote {n} counterfactuals" + (f" to {shards}" if shards else "") + (f", grid {grid}" if grid else ""))


def _device(name: str):
    import torch

    from skdcgn.utils.device import default_device

    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        _fail(f"--device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        _fail(f"--device {name}: this machine has no CUDA device; allowed here: auto, cpu")
    return device


@app.command("teacher-grid")
def teacher_grid(
    out: Path = typer.Argument(..., help="PNG file to write."),
    kind: GridTeacher = typer.Option(GridTeacher.synthetic, help="Teacher kind."),
    checkpoint: Path = typer.Option(None, help="cgn-mnist: the teacher's .pth state dict."),
    variant: MnistVariant = typer.Option(MnistVariant.double_colored,
                                         help="cgn-mnist: the MNIST variant the teacher mirrors."),
    columns: int = typer.Option(10, min=1, help="Noise draws per class (one row per class)."),
    seed: int = typer.Option(0, min=0, help="Seed of the noise."),
    scale: int = typer.Option(4, min=1, help="Pixel upscaling of the PNG."),
) -> None:
    """Look at a teacher: one row per class, factual composites (texture and background follow the digit)."""
    import torch

    from skdcgn.counterfactuals.composite import COMPOSITE_RANGE, render_all
    from skdcgn.settings.teacher import TeacherSettings
    from skdcgn.teachers.noise import draw_noise
    from skdcgn.teachers.registry import make_teacher
    from skdcgn.utils.grids import save_grid

    try:
        settings = TeacherSettings.parse({"kind": kind.value, "cgn-mnist": {"checkpoint": str(checkpoint or ""),
                                                                             "variant": variant.value}}, "teacher")
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


def _groups_help() -> str:
    from skdcgn.fetch.catalog import CATALOG

    listed = "; ".join(f"{name}: {group.summary}" for name, group in CATALOG.groups.items())
    return f"Which assets (default: {' '.join(CATALOG.defaults)}). {listed}."


@app.command()
def fetch(
    groups: Optional[list[str]] = typer.Argument(None, help=_groups_help(), metavar="[GROUP]...",
                                                 show_default=False),
    source: Optional[Path] = typer.Option(None, "--from", help="Copy the files from this local folder instead: "
                                          "any layout, each file found by its name and checked by its sha256."),
    root: Path = typer.Option(Path("."), help="The project root, under whose folders the files go."),
    force: bool = typer.Option(False, "--force", help="Replace a file in place whose sha256 is not accepted."),
) -> None:
    """Bring the real assets (CGN teachers, MNIST test digits, textures) into their folders, checked by sha256.

    From their public origins, or with --from DIR from a local copy (offline machines). docs/data.md lists them.
    """
    from skdcgn.fetch.catalog import FetchError
    from skdcgn.fetch.fetching import fetch as fetch_assets

    try:
        report = fetch_assets(root, groups or (), source, force)
    except FetchError as error:
        _fail(str(error))
    typer.echo(report.summary())


PASS_THROUGH = {"context_settings": {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}}
PROJECT_SCRIPTS = {
    "studies": "Queue the SKDCGN paper's studies as named DVC experiments (skdcgn studies --help).",
    "report": "Turn the studies' experiments into results/report.md, its tables and figures.",
    "profile": "A profile's params as `dvc exp run` arguments: skdcgn profile cgn-mnist double_colored.",
}


def _project_script(name: str, summary: str) -> None:
    """The project's DVC-side scripts (pipeline/) as subcommands, run as their own process: this package never
    imports dvc, and the scripts keep their own options (`skdcgn studies --help` prints theirs)."""

    def command(context: typer.Context) -> None:
        raise typer.Exit(subprocess.call([sys.executable, "-m", f"pipeline.{name}", *context.args]))

    command.__doc__ = summary
    app.command(name, **PASS_THROUGH)(command)


for _name, _summary in PROJECT_SCRIPTS.items():
    _project_script(_name, _summary)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
