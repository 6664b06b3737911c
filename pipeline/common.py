"""What every stage does the same way: arguments, params, threads, device, atomic outputs, JSON."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
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
WRITERS_ENV = "SKDCGN_WRITERS"
PROCESSES_ENV = "SKDCGN_PROCESSES"
RESUME_ENV = "SKDCGN_RESUME"
RESUME_DIR = ".resume"  # inside a partial output: its key and the state a resumed run goes on from
CODE = [Path(__file__).resolve().parents[1] / package for package in ("skdcgn", "pipeline")]


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
    torch.set_num_threads(env_count(THREADS_ENV, default=1, minimum=1))
    # cuBLAS repeats its results only with a fixed workspace (PyTorch's reproducibility notes); it must be set
    # before CUDA starts. Kernels with no deterministic version (README: on CUDA) warn rather than fail.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def under_torchrun(module: str, batch_size: int) -> None:
    """SKDCGN_PROCESSES=N (N > 1): run this training stage as N data-parallel processes on this machine, one GPU
    each when there are GPUs, by handing it to torchrun, and end with torchrun's exit code. Under torchrun
    already (or with N = 1) this returns and the stage runs. Speed only, so an environment variable, like the
    threads. A batch that does not split evenly over the processes is refused here, before any starts."""
    processes = env_count(PROCESSES_ENV, default=1, minimum=1)
    if processes == 1 or "LOCAL_RANK" in os.environ:
        return
    if batch_size % processes:
        print(f"error: batch_size {batch_size} does not split evenly over {PROCESSES_ENV}={processes} processes; "
              f"allowed: a multiple of {processes}", file=sys.stderr)
        raise SystemExit(2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", module, *sys.argv[1:]]
    raise SystemExit(subprocess.call(command))


def shard_writers() -> int:
    """Processes that encode shards while the stage's own process runs the networks (0: encode in it). One by
    default: on 2 cores, one core for the teacher and one for encoding (BENCHMARKS.md)."""
    return env_count(WRITERS_ENV, default=1, minimum=0)


def env_count(name: str, default: int, minimum: int) -> int:
    """A whole number from the environment; anything else ends the stage with one line, exit code 2."""
    value = os.environ.get(name, "")
    if value == "":
        return default
    if not value.isdigit() or int(value) < minimum:
        print(f"error: {name}={value!r} is not allowed; allowed: a whole number >= {minimum}", file=sys.stderr)
        raise SystemExit(2)
    return int(value)


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


def may_resume(default: bool) -> bool:
    """SKDCGN_RESUME: unset = the stage's default (training resumes, generation starts afresh), 1 = resume,
    0 = start afresh. An environment variable, not a param: resuming changes no output, so no stage re-runs."""
    value = os.environ.get(RESUME_ENV, "")
    if value not in ("", "0", "1"):
        print(f"error: {RESUME_ENV}={value!r} is not allowed; allowed: 0, 1 or unset", file=sys.stderr)
        raise SystemExit(2)
    return default if value == "" else value == "1"


def resume_key(*inputs) -> str:
    """What a partial output must match to be continued: the stage's inputs (params as dataclasses, digests of
    input files) and the source of the code that writes it."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=_plain).encode())
    for path in sorted(path for package in CODE for path in package.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _plain(value: object) -> object:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


@contextmanager
def staging(output: Path, key: str | None = None, resume: bool = False) -> Iterator[Path]:
    """Build a stage output under `.<name>.partial` and rename it into place only when complete.

    `key` (from `resume_key`) marks the partial directory. With `resume`, the partial directory of a killed run
    with the same key is continued, not wiped; its `.resume/` (key, training checkpoint) goes before the rename.
    """
    partial = partial_path(output)
    key_file = partial / RESUME_DIR / "key"
    if resume and key and key_file.is_file() and key_file.read_text() == key:
        print(f"resuming the interrupted run in {partial}", flush=True)
    else:
        shutil.rmtree(partial, ignore_errors=True)
        key_file.parent.mkdir(parents=True)
        key_file.write_text(key or "")
    yield partial
    shutil.rmtree(partial / RESUME_DIR)
    shutil.rmtree(output, ignore_errors=True)
    partial.rename(output)


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
