"""Teacher samples on disk: a generation killed mid-shard resumes from its whole shards, and one written by several
processes joins, to the bytes of one uninterrupted process."""

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from skdcgn.settings.generate import GenerateSettings, ImageFormats
from skdcgn.shards import writer
from skdcgn.settings.teacher import SyntheticSettings
from skdcgn.shards.format import ShardError
from skdcgn.shards.parts import Part
from skdcgn.shards.reading import open_dataset
from skdcgn.shards.validation import validate
from skdcgn.teachers.sampling import sample_teacher
from skdcgn.teachers.synthetic import SyntheticTeacher

IM = "texture"
PER_CLASS = 13
SIZES = GenerateSettings(shard_size=20, batch_size=7)  # 130 samples; batches straddle shard boundaries


class Killed(Exception):
    """Stands in for kill -9: the run stops mid-batch with no chance to tidy up."""


class CountingTeacher:
    """The synthetic teacher, counting its forward batches; it is killed before batch number `dies_at`."""

    def __init__(self, dies_at: int | None = None):
        self.teacher, self.calls, self.dies_at = SyntheticTeacher(), 0, dies_at

    def __getattr__(self, name):
        return getattr(self.teacher, name)

    def __call__(self, im, z, y):
        if self.calls == self.dies_at:
            raise Killed
        self.calls += 1
        return self.teacher(im, z, y)


def generate(directory: Path, teacher, resume: bool = False, writers: int = 0) -> None:
    sample_teacher(teacher, IM, directory, PER_CLASS, torch.Generator().manual_seed(0), SIZES, resume=resume,
                   writers=writers)


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
        ".shard-000002.tar.partial", "shard-000000.rows.parquet", "shard-000000.tar", "shard-000001.rows.parquet",
        "shard-000001.tar"]
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
    assert open_dataset(killed / "train").load()["key"] == [f"{i:08d}" for i in range(130)]


def test_without_resume_a_killed_generation_starts_afresh(killed):
    teacher = CountingTeacher()
    generate(killed / "train", teacher)
    assert teacher.calls == 19
    assert validate(killed / "train")["num_samples"] == 130


def test_masks_are_never_stored_lossy():
    # The rule lives in the settings that say how each mechanism is stored: a lossy mask is a different mask.
    with pytest.raises(ValueError, match="^shape: 'jpeg' is not allowed; allowed: png$"):
        ImageFormats(shape="jpeg")


def test_a_teacher_on_any_device_writes_the_bytes_of_one_on_the_cpu(tmp_path, device):
    sample_teacher(SyntheticTeacher(), "background", tmp_path / "cpu", 4, torch.Generator().manual_seed(0), SIZES)
    sample_teacher(SyntheticTeacher().to(device), "background", tmp_path / "moved", 4,
                   torch.Generator().manual_seed(0), SIZES)
    cpu, moved = (open_dataset(tmp_path / name).load() for name in ("cpu", "moved"))
    assert torch.equal(cpu["z"], moved["z"]) and torch.equal(cpu["label"], moved["label"])
    # On CUDA other kernels may move a pixel across an 8-bit rounding boundary, never further.
    assert (cpu["image"].int() - moved["image"].int()).abs().max() <= (0 if device.type == "cpu" else 1)


def test_many_classes_at_a_large_size(tmp_path):
    teacher = SyntheticTeacher(SyntheticSettings(num_classes=1000, image_size=256))
    sample_teacher(teacher, "texture", tmp_path / "train", 1, torch.Generator().manual_seed(0),
                   GenerateSettings(shard_size=400, batch_size=250))
    dataset = open_dataset(tmp_path / "train")
    assert dataset.num_samples == 1000 and len(dataset.urls) == 3
    assert dataset.class_means().shape == (1000, 3, 256, 256)
    assert dataset.meta["image"] | {"value_range": None} == {"channels": 3, "height": 256, "width": 256,
                                                             "value_range": None, "format": "png"}


JPEG = GenerateSettings(shard_size=20, batch_size=7, image_format=ImageFormats(texture="jpeg"))


def generate_part(directory: Path, teacher, part: str, settings: GenerateSettings = SIZES, writers: int = 0) -> None:
    sample_teacher(teacher, IM, directory, PER_CLASS, torch.Generator().manual_seed(0), settings, writers=writers,
                   part=Part.parse(part))


@pytest.mark.parametrize("settings", [SIZES, JPEG], ids=["png", "jpeg"])
def test_parts_written_apart_join_into_the_bytes_of_one_process(tmp_path, settings):
    """Three processes, each its own shards of one dataset; then a lone resumed run joins them and samples
    nothing more. Class sums from the parts add up exactly, even for JPEG images."""
    parts = [CountingTeacher() for _ in range(3)]
    for index, teacher in enumerate(parts):
        generate_part(tmp_path / "train", teacher, f"{index}/3", settings, writers=index % 2 * 2)
    assert not (tmp_path / "train").exists()  # no part completes the dataset
    joiner = CountingTeacher()
    sample_teacher(joiner, IM, tmp_path / "train", PER_CLASS, torch.Generator().manual_seed(0), settings,
                   resume=True)
    assert joiner.calls == 0
    # 7 shards of 20, 19 batches of 7: each part runs only the batches that reach into its shards;
    assert [teacher.calls for teacher in parts] == [9, 8, 8]  # batches across two parts' shards run twice
    sample_teacher(CountingTeacher(), IM, tmp_path / "whole", PER_CLASS, torch.Generator().manual_seed(0), settings)
    assert digests(tmp_path / "train") == digests(tmp_path / "whole")


def test_a_killed_part_resumes_and_a_missing_part_is_written_by_the_joiner(tmp_path):
    with pytest.raises(Killed):
        generate_part(tmp_path / "train", CountingTeacher(dies_at=6), "1/2")  # 6 batches run, 5 written: into shard 3
    generate_part(tmp_path / "train", CountingTeacher(), "0/2")  # leaves the killed part's files alone
    names = {p.name for p in (tmp_path / ".train.partial").iterdir()}
    assert {"shard-000001.tar", ".shard-000003.tar.partial", "part-0-of-2.sums.npz"} <= names
    generate_part(tmp_path / "train", CountingTeacher(), "1/2")
    (tmp_path / ".train.partial" / "part-1-of-2.sums.npz").unlink()  # as if part 1 had been killed at its end
    joiner = CountingTeacher()
    sample_teacher(joiner, IM, tmp_path / "train", PER_CLASS, torch.Generator().manual_seed(0), SIZES, resume=True)
    assert joiner.calls == 0  # part 1's shards are whole: their class sums are read back, not sampled again
    generate(tmp_path / "whole" / "train", CountingTeacher())
    assert digests(tmp_path / "train") == digests(tmp_path / "whole" / "train")
    shutil.rmtree(tmp_path / "train")
    generate_part(tmp_path / "train", CountingTeacher(), "0/2")
    generate(tmp_path / "train", CountingTeacher(), resume=True)  # part 1 never ran: the joiner writes its shards
    assert digests(tmp_path / "train") == digests(tmp_path / "whole" / "train")


@pytest.mark.parametrize("parts", [1, 2], ids=["alone", "joining-2-parts"])
def test_a_run_killed_as_it_checks_the_finished_dataset_resumes_without_sampling(tmp_path, monkeypatch, parts):
    """The rows and the parts' sums stay until the dataset is checked: a kill then (the last moment before the
    rename) leaves all that a resumed run needs to finish without the teacher."""
    for index in range(parts if parts > 1 else 0):
        generate_part(tmp_path / "train", CountingTeacher(), f"{index}/{parts}")

    def killed_while_checking(directory, deep):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(writer, "validate", killed_while_checking)
        with pytest.raises(Killed):
            generate(tmp_path / "train", CountingTeacher(), resume=True)
    assert (tmp_path / ".train.partial" / "dataset.json").is_file()
    resumed = CountingTeacher()
    generate(tmp_path / "train", resumed, resume=True)
    assert resumed.calls == 0
    generate(tmp_path / "whole" / "train", CountingTeacher())
    assert digests(tmp_path / "train") == digests(tmp_path / "whole" / "train")


def test_parts_of_runs_with_different_part_counts_are_refused_by_name(tmp_path):
    generate_part(tmp_path / "train", CountingTeacher(), "0/2")
    generate_part(tmp_path / "train", CountingTeacher(), "0/3")  # shards 0 and 6 are then in two sums files
    with pytest.raises(ShardError, match="part-0-of-3.sums.npz and .*part-0-of-2.sums.npz both cover shard 0"):
        generate(tmp_path / "train", CountingTeacher(), resume=True)


@pytest.mark.parametrize("text", ["2/2", "0/0", "1", "a/3", "-1/2"])
def test_a_part_is_p_of_P_with_p_below_P(text):
    with pytest.raises(ValueError, match="allowed: p/P with 0 <= p < P"):
        Part.parse(text)
