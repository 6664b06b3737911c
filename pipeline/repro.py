"""`dvc repro` with independent stages at once: the default run on every free core.

`dvc repro` runs one stage at a time, and a stage's training uses one CPU thread (more threads on a small student
made its step slower on a loaded machine, docs/pipeline.md: threads), so on 2 cores half the machine waited. Here each
stage is its own `dvc repro --single-item` process, started as soon as every stage upstream of it is done, up to
`--jobs` at a time. DVC releases its repository lock while a stage's command runs (`--wait-for-lock` waits out
the short moments it holds it), so the stages, dvc.lock, the cache and the run-cache are exactly what a plain
`dvc repro` gives: same outputs, same bytes, and a stage that is up to date is skipped as there.

Usage: python -m pipeline.repro [TARGET ...] [--jobs N]     (`make repro`; default N: usable cores / threads)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

THREADS_ENV = "SKDCGN_THREADS"  # as pipeline.common (not imported here: it loads torch, which this does not need)
NODE = re.compile(r'^"([^"]+)";$')
EDGE = re.compile(r'^"([^"]+)" -> "([^"]+)";$')


def stage_graph(targets: list[str]) -> dict[str, set[str]]:
    """Each stage of the targets' pipelines (all stages without targets) -> the stages directly upstream of it,
    in dvc.yaml's order, from `dvc dag --dot`."""
    upstream: dict[str, set[str]] = {}
    for target in targets or [None]:
        command = ["dvc", "dag", "--dot"] + ([target] if target else [])
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[0]
            print(f"error: `{' '.join(command)}` failed: {said}", file=sys.stderr)
            raise SystemExit(2)
        for line in result.stdout.splitlines():
            if node := NODE.match(line.strip()):
                upstream.setdefault(node.group(1), set())
            elif edge := EDGE.match(line.strip()):
                upstream.setdefault(edge.group(2), set()).add(edge.group(1))
    return upstream


def descendants(upstream: dict[str, set[str]]) -> dict[str, int]:
    """How many stages wait, directly or not, on each stage: the ones many wait on start first (the shape
    student's branch before the reference classifiers, which no stage waits on)."""
    below = {stage: set() for stage in upstream}
    changed = True
    while changed:
        changed = False
        for stage, parents in upstream.items():
            for parent in parents:
                grown = below[parent] | {stage} | below[stage]
                if grown != below[parent]:
                    below[parent], changed = grown, True
    return {stage: len(stages) for stage, stages in below.items()}


@dataclass
class Schedule:
    """Which stages may start: those whose upstream stages are all done, the most waited-on first."""

    upstream: dict[str, set[str]]
    done: set[str] = field(default_factory=set)
    started: set[str] = field(default_factory=set)

    def ready(self) -> list[str]:
        weight, order = descendants(self.upstream), list(self.upstream)
        waiting = [stage for stage in self.upstream if stage not in self.started and self.upstream[stage] <= self.done]
        return sorted(waiting, key=lambda stage: (-weight[stage], order.index(stage)))

    def finished(self) -> bool:
        return self.done == set(self.upstream)


def default_jobs() -> int:
    threads = os.environ.get(THREADS_ENV, "1")
    per_stage = int(threads) if threads.isdigit() and int(threads) > 0 else 1
    return max(1, len(os.sched_getaffinity(0)) // per_stage)


def start(stage: str, output_lock: threading.Lock) -> subprocess.Popen:
    """One stage as DVC runs it; its output goes on, line by line, prefixed with the stage's name."""
    process = subprocess.Popen(["dvc", "--wait-for-lock", "repro", "--single-item", stage],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def relay() -> None:
        for line in process.stdout:
            with output_lock:
                print(f"[{stage}] {line}", end="", flush=True)

    threading.Thread(target=relay, daemon=True).start()
    return process


def run(upstream: dict[str, set[str]], jobs: int) -> int:
    """Runs every stage, at most `jobs` at once; after a failure starts no more, lets the running ones end, and
    returns the first failure's exit code (0 when all passed)."""
    schedule, running, failures = Schedule(upstream), {}, []
    output_lock, began = threading.Lock(), time.monotonic()
    while running or (not failures and not schedule.finished()):
        for stage in schedule.ready()[: jobs - len(running)] if not failures else []:
            schedule.started.add(stage)
            running[stage] = (start(stage, output_lock), time.monotonic())
            with output_lock:
                print(f"start {stage} ({len(running)} running)", flush=True)
        time.sleep(0.2)
        for stage, (process, since) in list(running.items()):
            if process.poll() is None:
                continue
            del running[stage]
            process.stdout.close()
            with output_lock:
                print(f"done {stage}: exit {process.returncode} after {time.monotonic() - since:.0f} s", flush=True)
            if process.returncode:
                failures.append((stage, process.returncode))
            else:
                schedule.done.add(stage)
    if failures:
        not_run = [stage for stage in upstream if stage not in schedule.started]
        stage, code = failures[0]
        print(f"error: stage {stage} failed (exit {code}); not run: {', '.join(not_run) or 'none'}",
              file=sys.stderr)
        return code
    print(f"all {len(upstream)} stages done in {time.monotonic() - began:.0f} s, up to {jobs} at once")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="stages to bring up to date, with what they need (default: all)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="stages at once (default: usable cores / SKDCGN_THREADS)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs} is not allowed; allowed: a whole number >= 1", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(run(stage_graph(args.targets), args.jobs))


if __name__ == "__main__":
    main()
