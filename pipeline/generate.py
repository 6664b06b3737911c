"""Stage generate@<im>: teacher samples for one mechanism, a training set and a held-out set.

The two sets come from different seed streams: the held-out inputs are never seen in training, so the
fidelity measured on them is generalisation, not memory. The teacher runs on the stage's device.
`SKDCGN_RESUME=1` continues a killed run from its whole shards when params, teacher and code are unchanged;
the result is the same bytes.

Several processes (GPUs, machines) write one dataset, each its own shards (skdcgn/shards/parts.py), to the bytes
of one process:
- `SKDCGN_PROCESSES=N` on one machine: N part processes, one GPU each when there are GPUs, then this process
  joins their shards;
- `SKDCGN_PART=p/P` runs part p of P alone (one per machine of a cluster, into a shared data/); the run after
  the last part, `SKDCGN_RESUME=1 dvc repro -s generate@<im>`, joins them and writes any shard still missing.
A lock file beside the output (`data/teacher/.<im>.lock`) keeps a part from running twice and a run from
starting while parts write, or parts while it runs: the latecomer is refused in one line, exit code 2.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch

from pipeline.common import (DATA, PROCESSES_ENV, RESUME_DIR, RESUME_ENV, env_count, exit_on_error, may_resume,
                             resume_key, setup_torch, shard_writers, stage_args, staging)
from skdcgn.shards.parts import Part
from skdcgn.utils.processes import die_with
from skdcgn.utils.atomic import create_once, partial_path
from skdcgn.utils.locks import LockHeld, OutputLock
from skdcgn.teachers.registry import make_teacher
from skdcgn.teachers.sampling import sample_teacher
from skdcgn.utils.progress import progress
from skdcgn.utils.seeds import generator

PART_ENV = "SKDCGN_PART"


def main() -> None:
    params, im = stage_args(with_im=True)
    part = this_part()
    processes = env_count(PROCESSES_ENV, default=1, minimum=1) if part.alone else 1
    writers = shard_writers()  # every environment setting is checked before anything is written
    resume = may_resume(default=False)
    device = part_device(setup_torch(), part)
    with exit_on_error():
        teacher = make_teacher(params.teacher).to(device)
    key = resume_key("generate", im, params.seed, params.teacher.kind, params.teacher.section(), params.generate,
                     teacher.identity())
    output = DATA / "teacher" / im
    lock = OutputLock(output.with_name(f".{output.name}.lock"))
    if not part.alone:
        locked(lock.part, part.index)
        sample_splits(teacher, params, im, part_output(output, key, part), part, writers, resume=True)
        return
    locked(lock.whole)
    with staging(output, key, resume) as out:
        if processes > 1:
            lock.release()  # the parts lock their own bytes; the join takes the whole file back
            run_parts(im, processes)
            locked(lock.whole)
        sample_splits(teacher, params, im, out, part, writers, resume=resume or processes > 1)


def this_part() -> Part:
    """SKDCGN_PART=p/P, else a lone process; anything else ends the stage with one line, exit code 2."""
    with exit_on_error():
        return Part.parse(os.environ[PART_ENV]) if os.environ.get(PART_ENV) else Part()


def part_device(device: torch.device, part: Part) -> torch.device:
    """Part p on GPU p (modulo the GPUs this machine has): N parts on N GPUs, each its own."""
    return torch.device("cuda", part.index % torch.cuda.device_count()) if device.type == "cuda" else device


def locked(take, *args) -> None:
    """Take the output's lock, or end the stage with one line, exit code 2, before anything is written."""
    try:
        take(*args)
    except LockHeld as held:
        print(f"error: {held}; allowed: one process per part, and a run alone", file=sys.stderr)
        raise SystemExit(2) from None


def part_output(output: Path, key: str, part: Part) -> Path:
    """The partial output that the parts of one run share, marked with `key` and the number of parts by
    whichever part comes first. One of another run (other params or code) is not a part's to wipe, as other parts
    may be writing into it, and parts of another count would write some shards twice: refused with one line,
    exit code 2, before anything is written."""
    partial = partial_path(output)
    marks = partial / RESUME_DIR
    marks.mkdir(parents=True, exist_ok=True)
    for name, mark, other in (("key", key, "a run of other params or code"),
                              ("parts", str(part.count), "parts of P={}")):
        create_once(marks / name, mark)
        found = (marks / name).read_text()
        if found != mark:
            print(f"error: {partial} holds {other.format(found)}; allowed: the parts of one run, all of one P. Delete "
                  f"it, then start the parts again", file=sys.stderr)
            raise SystemExit(2)
    return partial


def sample_splits(teacher, params, im: str, out: Path, part: Part, writers: int, resume: bool) -> None:
    settings = params.generate
    for split, per_class in (("train", settings.per_class), ("heldout", settings.heldout_per_class)):
        if (out / split).is_dir():
            continue  # finished before the interruption: kept only when resuming a run of the same key
        total = part.samples(per_class * teacher.num_classes, settings.shard_size)
        label = f"generate {im} {split}" + ("" if part.alone else f" part {part}")
        with progress(label, total, every=settings.batch_size) as advance:
            sample_teacher(teacher, im, out / split, per_class, generator(params.seed, "generate", im, split),
                           settings, advance=advance, resume=resume, writers=writers,
                           class_means=split == "train", part=part)
        if part.alone:
            report_disk(f"generate {im} {split}", out / split, per_class * teacher.num_classes)


def report_disk(label: str, dataset: Path, samples: int) -> None:
    """What a sample costs on disk, shards, manifest and class means included: the figure to plan a million by."""
    size = sum(path.stat().st_size for path in dataset.iterdir())
    print(f"{label}: {samples:,} samples, {size / 1e6:,.1f} MB on disk, {size / samples / 1e3:,.2f} kB per sample",
          flush=True)


def run_parts(im: str, processes: int) -> None:
    """The stage once per part, in parallel; they write into the partial output this process then joins. A failed
    part ends the stage with its exit code and leaves the whole shards for SKDCGN_RESUME=1."""
    parent = os.getpid()
    parts = [subprocess.Popen([sys.executable, "-m", "pipeline.generate", im], preexec_fn=lambda: die_with(parent),
                              env={**os.environ, PART_ENV: f"{index}/{processes}", PROCESSES_ENV: "1"})
             for index in range(processes)]
    codes = [process.wait() for process in parts]
    failed = [(index, code) for index, code in enumerate(codes) if code]
    if failed:
        print(f"error: generate {im} part {failed[0][0]}/{processes} failed (exit code {failed[0][1]}); "
              f"{RESUME_ENV}=1 goes on from the whole shards", file=sys.stderr)
        raise SystemExit(failed[0][1] if failed[0][1] > 0 else 1)


if __name__ == "__main__":
    main()
