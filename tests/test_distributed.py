"""Data-parallel distillation on the CPU: DistributedDataParallel over gloo with 2 processes, as torchrun runs it."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skdcgn.distillation.heldout import heldout_fidelity
from test_distill_loop import IM, teacher_samples, train

STEPS = 20


def one_rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    student, final, recorder = train(STEPS)
    with pytest.raises(ValueError) as refused:
        train(STEPS, batch_size=33)
    torch.save({"parameters": dict(student.named_parameters()), "final": final, "logs": recorder.logs,
                "refused": str(refused.value)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
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
