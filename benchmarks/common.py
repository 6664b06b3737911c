"""What every benchmark does the same way: the params it measures at, threads and device, and timing.

Run from the project root: `python -m benchmarks.<name> [--profile cgn-mnist --variant double_colored]
[--set key=value ...]`; on a GPU machine `bash benchmarks/gpu.sh` runs them all there. The sizes are
params.yaml's (with the profile and `--set` laid over it), so a figure describes the pipeline as configured,
not a toy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time
from typing import Callable

import torch
import yaml

from pipeline.common import setup_torch
from pipeline.params import PARAMS_FILE, Params, parse
from skdcgn.teachers.base import Teacher
from skdcgn.teachers.registry import make_teacher
from pipeline.profile import merged, nested, overrides


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", help="a profile in profiles/ laid over params.yaml, e.g. cgn-mnist")
    parser.add_argument("--variant", help="the profile's variant, e.g. double_colored")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override in dvc's -S form, e.g. teacher.cgn-mnist.checkpoint=/abs/path.pth")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best is kept")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="without torch.use_deterministic_algorithms (the stages turn it on): what it costs")
    return parser


def setup(args: argparse.Namespace) -> tuple[Params, torch.device]:
    """The params to measure at, and the device and threads of a stage (SKDCGN_THREADS)."""
    data = yaml.safe_load(PARAMS_FILE.read_text())
    if args.profile:
        data = merged(data, nested(overrides(args.profile, args.variant)))
    for item in args.set:
        key, _, value = item.partition("=")
        data = merged(data, nested({key: yaml.safe_load(value)}))
    device = setup_torch()
    if args.nondeterministic:
        torch.use_deterministic_algorithms(False)
    print(f"# {platform.node()}: {device}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
          f"{'non' if args.nondeterministic else ''}deterministic algorithms")
    return parse(data), device


def teacher_on(params: Params, device: torch.device) -> Teacher:
    return make_teacher(params.teacher).to(device)


def best_seconds(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Wall seconds of `run()`, the best of `repeats` after one warm-up; CUDA is synchronised around each run so
    queued kernels are counted. The stages' progress lines are silenced: only the results are printed."""
    times = []
    with contextlib.redirect_stdout(io.StringIO()):
        run()
        for _ in range(repeats):
            synchronise(device)
            start = time.perf_counter()
            run()
            synchronise(device)
            times.append(time.perf_counter() - start)
    return min(times)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report(name: str, rates: dict[str, float], ratio: tuple[str, str], unit: str) -> None:
    """One line: each rate, then the ratio of the two named ones."""
    shown = ", ".join(f"{label} {rate:,.0f} {unit}" if rate >= 100 else f"{label} {rate:.3g} {unit}"
                      for label, rate in rates.items())
    print(f"{name}: {shown}; {ratio[0]} / {ratio[1]} = {rates[ratio[0]] / rates[ratio[1]]:.3f}", flush=True)
