"""What every stage does the same way: arguments, params, threads, device, the stage's code, staged outputs.

Only what every stage needs is imported here (params and the atomic-write helper): a stage depends on exactly
the code it runs (dvc.yaml), and a module imported here would become code of every stage.
"""

from __future__ import annotations

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
import yaml
from pydantic import BaseModel

from pipeline.params import Params, load_or_exit
from skdcgn.mechanisms import IMS
from skdcgn.utils.allocator import keep_freed_memory
from skdcgn.utils.atomic import atomic_directory, partial_path
from skdcgn.utils.processes import die_with

DATA = Path("data")
# Metrics and plots a fresh clone shows: outputs that git tracks (`cache: false` in dvc.yaml), apart from the
# cached models and shards of the same stage.
SHOWN = DATA / "metrics"
ROOT = Path(__file__).resolve().parents[1]
CODE_ROOTS = ("skdcgn", "pipeline")  # deps under these in dvc.yaml are code; the others are data
THREADS_ENV = "SKDCGN_THREADS"
WRITERS_ENV = "SKDCGN_WRITERS"
PROCESSES_ENV = "SKDCGN_PROCESSES"
RESUME_ENV = "SKDCGN_RESUME"
AGENT_ENV = "SKDCGN_TORCHRUN_PID"  # set for the ranks by the torchrun a stage starts
RESUME_DIR = ".resume"  # inside a partial output: its key and the state a resumed run goes on from


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
    """The stage's device (CUDA when present) and CPU threads. One thread by default: on a loaded 2-core machine
    two intra-op threads made a small student's step up to 30x slower. Threads are set by environment, not
    params: they change speed, and a params change would re-run stages."""
    torch.set_num_threads(env_count(THREADS_ENV, default=1, minimum=1))
    keep_freed_memory()
    # cuBLAS repeats its results only with a fixed workspace (PyTorch's reproducibility notes); it must be set
    # before CUDA starts. Kernels with no deterministic version (docs/reproducibility.md) warn rather than fail.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new uninitialised tensor with NaN, a check for code that reads memory it
    # never wrote. No stage does (each output is written whole), so the bytes are the same without it, and a
    # student's forward spent a fifth of its CPU time in those fills (benchmarks.student_forward).
    torch.utils.deterministic.fill_uninitialized_memory = False
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def under_torchrun(module: str, batch_size: int) -> None:
    """SKDCGN_PROCESSES=N (N > 1): run this training stage as N data-parallel processes on this machine, one GPU
    each when there are GPUs, by handing it to torchrun, and end with torchrun's exit code. Under torchrun
    already (or with N = 1) this returns and the stage runs. Speed only, so an environment variable, like the
    threads. A batch that does not split evenly over the processes is refused here, before any starts.

    torchrun dies with the stage and each rank with its torchrun (which starts ranks in sessions of their own,
    out of reach of a signal to the stage's group): a killed stage must leave nothing that goes on training,
    writing its partial output under a resumed run."""
    processes = env_count(PROCESSES_ENV, default=1, minimum=1)
    if "LOCAL_RANK" in os.environ:
        die_with(int(os.environ.get(AGENT_ENV) or os.getppid()))
        return
    if processes == 1:
        return
    if batch_size % processes:
        print(f"error: batch_size {batch_size} does not split evenly over {PROCESSES_ENV}={processes} processes; "
              f"allowed: a multiple of {processes}", file=sys.stderr)
        raise SystemExit(2)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", module, *sys.argv[1:]]
    stage = os.getpid()
    raise SystemExit(subprocess.call(command, preexec_fn=lambda: _torchrun_of(stage)))


def _torchrun_of(stage: int) -> None:
    """Runs in the torchrun process before it starts: it dies with the stage, and names itself to its ranks, so
    that a rank whose torchrun died while the rank started up (its parent is someone else by then) ends at once.
    subprocess passes no environment of its own here, so torchrun starts with this one. (Under a torchrun
    started by hand, as on a cluster, a rank dies with its parent.)"""
    die_with(stage)
    os.environ[AGENT_ENV] = str(os.getpid())


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


def stage_code(stage: str, root: Path = ROOT) -> list[Path]:
    """The code files a stage of dvc.yaml depends on (its deps under skdcgn/ and pipeline/, folders expanded
    to their .py files), relative to `root`: what DVC re-runs the stage for is what a resumed run must match."""
    entry = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]
    deps = entry.get("do", entry)["deps"]
    files = set()
    for dep in deps:
        if dep.split("/")[0] in CODE_ROOTS:
            path = root / dep
            files.update(path.rglob("*.py") if path.is_dir() else [path])
    return sorted(path.relative_to(root) for path in files)


def resume_key(stage: str, *inputs) -> str:
    """What a partial output must match to be continued: the stage's inputs (params sections, digests of input
    files) and the code it depends on in dvc.yaml, the same code whose change makes DVC re-run it."""
    digest = hashlib.sha256(json.dumps([stage, *inputs], sort_keys=True, default=_plain).encode())
    for path in stage_code(stage):
        digest.update(str(path).encode() + b"\0" + (ROOT / path).read_bytes())
    return digest.hexdigest()


def _plain(value: object) -> object:
    return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else str(value)


@contextmanager
def staging(output: Path, key: str | None = None, resume: bool = False) -> Iterator[Path]:
    """Build a stage output under its partial name and rename it into place only when complete.

    `key` (from `resume_key`) marks the partial directory. With `resume`, the partial directory of a killed run
    with the same key is continued, not wiped; its `.resume/` (key, training checkpoint) goes before the rename.
    """
    key_file = partial_path(output) / RESUME_DIR / "key"
    keep = bool(resume and key and key_file.is_file() and key_file.read_text() == key)
    with atomic_directory(output, keep=keep) as partial:
        if keep:
            print(f"resuming the interrupted run in {partial}", flush=True)
        else:
            key_file.parent.mkdir(parents=True)
            key_file.write_text(key or "")
        yield partial
        shutil.rmtree(partial / RESUME_DIR)


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
