"""Two commits side by side on this host: the README's `make repro` from nothing (a fresh clone of each, its
`data/` removed), one after the other, with wall time per stage and in all, and the fidelity and accuracy each
run reaches.

Absolute CPU times vary 2-4x between hosts and days, so only the ratio of two runs on one host in one sitting
says whether a change made the pipeline faster. Each clone runs its own Makefile's `repro` recipe (so a commit
is timed the way a user of that commit runs it) with this checkout's `.venv`, linked in when both commits lock
the same environment. `--profile` lays a profile over each clone's params.yaml, as that commit defines it.

Usage: python -m benchmarks.compare_repro BASE [HEAD] [--profile cgn-mnist double_colored] [--set key=value]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNING = re.compile(r"Running stage '([^']+)'")
START, DONE = re.compile(r"^start (\S+) \("), re.compile(r"^done (\S+): exit")  # pipeline.repro's lines
# (metrics file, path inside it, label): what the goals are stated in.
HEADLINES = [
    ("data/metrics/students/shape/live/metrics.json", "heldout.mask_iou", "shape IoU"),
    ("data/metrics/students/texture/live/metrics.json", "heldout.psnr", "texture dB"),
    ("data/metrics/students/background/live/metrics.json", "heldout.psnr", "background dB"),
    ("data/reference/metrics.json", "teacher.accuracy", "teacher OOD acc."),
    ("data/evaluate/metrics.json", "student.accuracy", "student OOD acc."),
]
RATIO = "student / teacher"  # computed from the two accuracies, as the report does


def clone(rev: str, into: Path, profile: list[str], settings: list[str]) -> None:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=into, check=True)
    if (into / "requirements.lock").read_bytes() != (ROOT / "requirements.lock").read_bytes():
        raise SystemExit(f"error: {rev} locks another environment than this checkout; run it with its own "
                         f"`make setup`")
    (into / ".venv").symlink_to(ROOT / ".venv")
    # From nothing: the committed metrics and plots are outputs too, and a stage whose outputs and inputs are all
    # as dvc.lock records (the reference classifiers, say) would be skipped.
    shutil.rmtree(into / "data")
    if profile or settings:
        # The clone's own profile code and files: each commit runs its own idea of the profile.
        script = ("import sys, yaml\n"
                  "from pipeline.profile import merged, nested, overrides\n"
                  "name, variant, sets = sys.argv[1], sys.argv[2] or None, sys.argv[3:]\n"
                  "params = yaml.safe_load(open('params.yaml'))\n"
                  "if name: params = merged(params, nested(overrides(name, variant)))\n"
                  "for item in sets:\n"
                  "    key, _, value = item.partition('=')\n"
                  "    params = merged(params, nested({key: yaml.safe_load(value)}))\n"
                  "yaml.safe_dump(params, open('params.yaml', 'w'), sort_keys=False)\n")
        name, variant = (profile + ["", ""])[:2]
        subprocess.run([str(into / ".venv/bin/python"), "-c", script, name, variant, *settings], cwd=into,
                       check=True)


def timed_repro(directory: Path, log: Path) -> tuple[float, dict[str, float]]:
    """`make repro` (its setup taken as done: the environment is linked in), each output line stamped as it
    arrives."""
    start, stamped = time.monotonic(), []
    with subprocess.Popen(["make", "-o", ".venv/.installed", "repro"], cwd=directory, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as process, log.open("w") as out:
        for line in process.stdout:
            stamped.append((time.monotonic() - start, line))
            out.write(f"{stamped[-1][0]:8.1f} {line}")
            out.flush()
    total = time.monotonic() - start
    if process.returncode:
        raise SystemExit(f"error: `make repro` failed in {directory} (log: {log})")
    return total, stage_seconds(stamped, total)


def stage_seconds(stamped: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Several stages at once (pipeline.repro): from a stage's "start" line to its "done" line. One at a time
    (`dvc repro`): from its "Running stage" line to the next stage's."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    previous = None
    for at, line in stamped:
        if started := START.match(line):
            starts[started.group(1)] = at
        elif done := DONE.match(line):
            ends[done.group(1)] = at
        elif (running := RUNNING.match(line)) and running.group(1) not in starts:
            starts[running.group(1)] = at
            if previous:
                ends[previous] = at
            previous = running.group(1)
    return {stage: ends.get(stage, total) - at for stage, at in starts.items()}


def headline_metrics(directory: Path) -> dict[str, float]:
    values = {}
    for file, key, label in HEADLINES:
        node = json.loads((directory / file).read_text())
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, (int, float)):
            values[label] = float(node)
    # As the report computes it, for commits whose evaluate stored the ratio and for those that do not.
    if values.get("teacher OOD acc.") and "student OOD acc." in values:
        values[RATIO] = values["student OOD acc."] / values["teacher OOD acc."]
    return values


def table(revs: list[str], results: list[tuple[float, dict, dict]]) -> str:
    (base_total, base_stages, base_metrics), (head_total, head_stages, head_metrics) = results
    lines = [f"| stage | {revs[0]} s | {revs[1]} s | ratio |", "|---|---|---|---|"]
    for stage in sorted(base_stages.keys() | head_stages.keys()):
        old, new = base_stages.get(stage), head_stages.get(stage)
        ratio = f"{new / old:.2f}" if old and new is not None else ""
        lines.append(f"| {stage} | {old or 0:.0f} | {new or 0:.0f} | {ratio} |")
    lines.append(f"| **`make repro` in all** | **{base_total:.0f}** | **{head_total:.0f}** | "
                 f"**{head_total / base_total:.2f}** |")
    lines += ["", f"| metric | {revs[0]} | {revs[1]} |", "|---|---|---|"]
    lines += [f"| {label} | {base_metrics.get(label, float('nan')):.4f} | {head_metrics.get(label, float('nan')):.4f} |"
              for label in [label for _, _, label in HEADLINES] + [RATIO]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare against, e.g. main's last landed commit")
    parser.add_argument("head", nargs="?", default="HEAD")
    parser.add_argument("--profile", nargs="+", default=[], metavar="NAME [VARIANT]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the clones (their logs stay either way)")
    args = parser.parse_args()
    revs = [subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip() for rev in (args.base, args.head)]
    scratch = Path(tempfile.mkdtemp(prefix="compare-repro-"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"# {platform.node()}: {cpu}, {len(os.sched_getaffinity(0))} cores, torch "
          f"{torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}; logs in {scratch}", flush=True)
    results = []
    for rev in revs:
        directory = scratch / rev
        clone(rev, directory, args.profile, args.set)
        total, stages = timed_repro(directory, scratch / f"{rev}.log")
        results.append((total, stages, headline_metrics(directory)))
        print(f"{rev}: {total:.0f} s", flush=True)
        if not args.keep:
            shutil.rmtree(directory)
    print(table(revs, results))


if __name__ == "__main__":
    main()
