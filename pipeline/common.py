"""What every stage does the same way: arguments, params, threads, device, atomic outputs, JSON."""

from __future__ import annotations

import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from pipeline.params import Params, load_or_exit
from skdcgn import IMS
from skdcgn.teachers import make_teacher
from skdcgn.teachers.base import Teacher

DATA = Path("data")
THREADS_ENV = "SKDCGN_THREADS"


def stage_args(with_im: bool) -> tuple[Params, str | None]:
    """Params (validated) and, for per-IM stages, the IM named on the command line."""
    im = None
    if with_im:
        im = sys.argv[1] if len(sys.argv) == 2 else None
        if im not in IMS:
            print(f"error: expected one mechanism argument, got {sys.argv[1:]}; allowed: {', '.join(IMS)}",
                  file=sys.stderr)
            raise SystemExit(2)
    return load_or_exit(), im


def setup_torch() -> torch.device:
    """Device and CPU threads. One thread by default: on a loaded 2-core machine two intra-op threads made a
    small student's step up to 30x slower. Threads are set by environment, not params: they change speed, and
    a params change would re-run stages."""
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def teacher_from(params: Params) -> Teacher:
    options = {k: v for k, v in vars(params.teacher).items() if k != "kind"}
    with exit_on_error():
        return make_teacher(params.teacher.kind, **options)


@contextmanager
def exit_on_error(*errors: type[Exception]) -> Iterator[None]:
    """Inputs a stage cannot use (a teacher checkpoint, a data folder) end it with one line and exit code 2.
    Stages build their inputs before `staging`, so nothing under data/ has been touched yet."""
    try:
        yield
    except (ValueError, *errors) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def staging(output: Path) -> Iterator[Path]:
    """Build a stage output under `.<name>.partial` and rename it into place only when complete."""
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
