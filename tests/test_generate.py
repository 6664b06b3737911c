"""Teacher samples on disk: a generation killed mid-shard resumes from its whole shards, to the same bytes."""

import hashlib
from pathlib import Path

import pytest
import torch

from skdcgn.generate import generate_samples
from skdcgn.shard_writer import ImageCodec
from skdcgn.shards import ShardError, load_dataset, validate
from skdcgn.teachers import make_teacher

IM = "texture"
PER_CLASS, SHARD_SIZE, BATCH_SIZE = 13, 20, 7  # 130 samples; batches straddle shard boundaries


class Killed(Exception):
    """Stands in for kill -9: the run stops mid-batch with no chance to tidy up."""


class CountingTeacher:
    """The synthetic teacher, counting its forward batches; it is killed before batch number `dies_at`."""

    def __init__(self, dies_at: int | None = None):
        self.teacher, self.calls, self.dies_at = make_teacher("synthetic"), 0, dies_at

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def __call__(self, im, z, y):
        if self.calls == self.dies_at:
            raise Killed
        self.calls += 1
        return self.teacher(im, z, y)


def generate(directory: Path, teacher, resume: bool = False, writers: int = 0) -> None:
    generate_samples(teacher, IM, directory, PER_CLASS, torch.Generator().manual_seed(0), SHARD_SIZE, BATCH_SIZE,
                     resume=resume, writers=writers)


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(params=[0, 2], ids=["in-process", "2-writer-processes"])
def killed(tmp_path, request) -> Path:
    """A generation killed in its 9th batch: samples 0-55 written, shards 0 and 1 whole, shard 2 half written.
    With writer processes, what was handed to them before the kill is written, as in the teacher's process."""
    with pytest.raises(Killed):
        generate(tmp_path / "train", CountingTeacher(dies_at=8), writers=request.param)
    partial = tmp_path / ".train.partial"
    assert sorted(p.name for p in partial.iterdir()) == [
        "shard-000000.rows.parquet", "shard-000000.tar", "shard-000001.rows.parquet", "shard-000001.tar",
        "shard-000002.tar.tmp"]
    return tmp_path


def test_a_killed_generation_leaves_nothing_a_reader_takes_for_complete(killed):
    assert not (killed / "train").exists()
    with pytest.raises(ShardError, match="not a shard dataset"):
        validate(killed / ".train.partial")


def test_resuming_keeps_the_whole_shards_and_gives_the_bytes_of_an_uninterrupted_run(killed, tmp_path):
    teacher = CountingTeacher()
    generate(killed / "train", teacher, resume=True)
    # Samples 40-129 remain: batches from the one holding sample 40 (35-41) to the last, 14 of the 19 batches.
    assert teacher.calls == 19 - 5
    generate(tmp_path / "whole" / "train", CountingTeacher())
    assert digests(killed / "train") == digests(tmp_path / "whole" / "train")
    assert load_dataset(killed / "train")["key"] == [f"{i:08d}" for i in range(130)]


def test_without_resume_a_killed_generation_starts_afresh(killed):
    teacher = CountingTeacher()
    generate(killed / "train", teacher)
    assert teacher.calls == 19
    assert validate(killed / "train")["num_samples"] == 130


def test_masks_are_never_stored_lossy(tmp_path):
    with pytest.raises(ValueError, match="shape masks are stored as png only, not jpeg"):
        generate_samples(make_teacher("synthetic"), "shape", tmp_path / "train", 1, torch.Generator(), 10, 10,
                         codec=ImageCodec("jpeg"))
    assert not list(tmp_path.iterdir())
