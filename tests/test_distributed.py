"""Data-parallel distillation on the CPU: DistributedDataParallel over gloo with 2 processes, as torchrun runs it;
then the distill stage itself on 2 processes through torchrun, killed midway."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from pipeline.profile import merged
from skdcgn.distillation.heldout import heldout_fidelity
from test_distill_loop import IM, Killed, KillAt, teacher_samples, train
from test_pipeline import ROOT, TINY, children, digests, run, running, stage_env

# Several training processes at once.
pytestmark = pytest.mark.slow

STEPS = 20


def one_rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    student, final, recorder = train(STEPS)
    with pytest.raises(ValueError) as refused:
        train(STEPS, batch_size=33)
    with pytest.raises(ValueError) as other_count:
        train(STEPS, checkpoint=f"{out}/one-process.pt", checkpoint_every=10)
    torch.save({"parameters": dict(student.named_parameters()), "final": final, "logs": recorder.logs,
                "refused": str(refused.value), "other_count": str(other_count.value)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    with pytest.raises(Killed):  # a one-process run's checkpoint (step 10), for the ranks to be refused
        train(STEPS, checkpoint=out / "one-process.pt", callback=KillAt(20), checkpoint_every=10)
    mp.spawn(one_rank, args=(2, str(out / "init"), str(out)), nprocs=2)
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def test_both_ranks_end_with_the_same_weights(ranks):
    # Each rank trained on its own half of every batch: only the averaged gradients keep them equal.
    first, second = (r["parameters"] for r in ranks)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_the_two_ranks_together_train_the_student(ranks):
    from skdcgn.distillation.students import StudentGenerator

    torch.manual_seed(0)
    untrained = heldout_fidelity(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    assert ranks[0]["final"]["l1"] < untrained["l1"] * 0.8


def test_only_rank_0_reports(ranks):
    assert [step for step, _ in ranks[0]["logs"]] == [10, 20]
    assert ranks[1]["logs"] == []


def test_a_batch_that_does_not_split_evenly_is_refused_on_every_rank(ranks):
    for rank in ranks:
        assert rank["refused"] == "batch_size 33 does not split evenly over 2 processes; allowed: a multiple of 2"


def test_a_checkpoint_of_another_number_of_processes_is_refused_on_every_rank(ranks):
    # BatchNorm statistics are per rank: going on from it would mix the bytes of two process counts.
    for rank in ranks:
        assert rank["other_count"].endswith("/one-process.pt: a checkpoint of another run (processes differ); "
                                            "delete it to start afresh")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project's shape samples, and a shape student that trains long enough to be killed midway."""
    project = tmp_path_factory.mktemp("torchrun")
    params = merged(merged(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY),
                    {"train": {"checkpoint_every": 4}, "ims": {"shape": {"steps": 300}}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(project, sys.executable, "-m", "pipeline.generate", "shape", PYTHONPATH=str(ROOT))
    return project


def kill_two_process_run(project: Path) -> list[int]:
    """Start distill@shape on 2 processes and kill -9 the stage as soon as its ranks train (the first checkpoint
    is written). Returns what the stage had started: torchrun and the ranks."""
    shutil.rmtree(project / "data/students/.shape.partial", ignore_errors=True)
    checkpoint = project / "data/students/.shape.partial/.resume/training.pt"
    stage = subprocess.Popen([sys.executable, "-m", "pipeline.distill", "shape"], cwd=project,
                             env=stage_env(PYTHONPATH=str(ROOT), SKDCGN_PROCESSES="2"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while not checkpoint.exists():
        assert stage.poll() is None, "distill ended before its first checkpoint"
        time.sleep(0.01)
    started = children(stage.pid)
    started += [rank for pid in started for rank in children(pid)]
    stage.kill()
    assert stage.wait() == -signal.SIGKILL
    return started


def survivors(pids: list[int]) -> list[int]:
    """Those still running after a few seconds, then killed: a failing test leaves nothing training."""
    deadline = time.monotonic() + 5
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in pids if running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def test_killing_the_stage_ends_torchrun_and_every_rank(project):
    # torchrun starts each rank in a session of its own: left running, they would go on training and renaming
    # the partial output under a resumed run.
    started = kill_two_process_run(project)
    assert len(started) == 3  # torchrun and its two ranks
    assert survivors(started) == []


def test_a_run_on_another_number_of_processes_starts_afresh(project):
    """The bytes depend on the number of processes (BatchNorm statistics are per rank): a one-process run does
    not go on from a killed two-process run's checkpoint, and says so."""
    assert survivors(kill_two_process_run(project)) == []
    log = run(project, sys.executable, "-m", "pipeline.distill", "shape", PYTHONPATH=str(ROOT))
    assert "starting afresh: the interrupted run trained on 2 processes, this one on 1 (SKDCGN_PROCESSES)" in log
    assert "resuming" not in log
    outputs = ("data/students/shape", "data/metrics/students/shape")
    after_the_kill = [digests(project / output) for output in outputs]
    run(project, sys.executable, "-m", "pipeline.distill", "shape", PYTHONPATH=str(ROOT))  # never interrupted
    assert [digests(project / output) for output in outputs] == after_the_kill
