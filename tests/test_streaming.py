"""Training from shards as they are read: every sample once per epoch, whole; the order from the seed; resumable."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from skdcgn.distillation.data import PairedSamples
from skdcgn.distillation.heldout import ShardSamples, heldout_fidelity
from skdcgn.distillation.loop import distill
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.settings.distill import LossSettings, TrainSettings
from skdcgn.shards import streaming
from skdcgn.shards.reading import Dataset, open_dataset
from skdcgn.shards.streaming import ShardStream, StreamedSamples
from skdcgn.shards.writer import writing_dataset
from skdcgn.training import distributed
from test_distill_loop import IM, teacher_samples

N, SHARD_SIZE = 60, 10  # 6 shards


def numbered(directory: Path, n: int) -> Path:
    """Sample i: z[0] = i, label i % 10, and an image whose every pixel is i: any re-pairing shows."""
    index = torch.arange(n)
    with writing_dataset(directory, shard_size=SHARD_SIZE, value_range=(0.0, 255.0), num_classes=10) as writer:
        writer.add_batch([f"{i:08d}" for i in range(n)], index % 10,
                         index.float()[:, None, None, None].expand(n, 1, 4, 4), {"z": index[:, None].float()})
    return directory


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return numbered(tmp_path_factory.mktemp("stream") / "train", N)


def stream(directory: Path, **options) -> StreamedSamples:
    return StreamedSamples(open_dataset(directory), **options)


def take(samples: StreamedSamples, count: int, seed: int = 0, start: int = 0, batch_size: int = 10) -> list:
    return list(itertools.islice(samples.batches(batch_size, seed, start), count))


def ranks_batches(directory: Path, monkeypatch, world: int, workers: int, count: int, batch_size: int) -> list:
    """The first `count` batches of each of `world` ranks (buffer 1: each shard is read in order)."""
    batches = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank_and_world", lambda rank=rank: (rank, world))
        batches.append(take(stream(directory, workers=workers, buffer=1), count, batch_size=batch_size))
    return batches


@pytest.mark.parametrize("world, workers", [(1, 2), (1, 4), (2, 2)])
def test_every_sample_comes_once_per_epoch_with_its_own_label_and_image(dataset, monkeypatch, world, workers):
    # A rank's batch is one shard, so every slot reads at the same pace; 6 shards do not divide over 4 slots.
    epochs = 3
    per_rank = ranks_batches(dataset, monkeypatch, world, workers, epochs * N // (SHARD_SIZE * world),
                             SHARD_SIZE * world)
    batches = [batch for step in zip(*per_rank) for batch in step]  # global batch k: the ranks' k-th, in turn
    z = torch.cat([b[0][:, 0] for b in batches]).long().tolist()
    for epoch in range(epochs):
        assert sorted(z[epoch * N:(epoch + 1) * N]) == list(range(N))
    for z_batch, y, images in batches:
        assert torch.equal(y, z_batch[:, 0].long() % 10)
        assert torch.equal(images.flatten(1).amin(1), z_batch[:, 0])  # every pixel is i
        assert torch.equal(images.flatten(1).amax(1), z_batch[:, 0])


@pytest.mark.parametrize("world, workers", [(2, 2), (1, 4)])
def test_the_slots_read_the_shards_of_one_epoch_before_the_next_when_a_shard_is_short(tmp_path, monkeypatch, world,
                                                                                     workers):
    """55 samples: 6 shards, the last of 5, over 4 slots. Slot (worker w, rank r) reads items (workers * j + w) *
    ranks + r, j = 0, 1, ..., of one sequence of shards; each epoch's 6 items of it are every shard once."""
    epochs, shards = 3, 6
    per_rank = ranks_batches(numbered(tmp_path / "train", 55), monkeypatch, world, workers, 12 * workers, 5 * world)
    opened = {}  # (worker, rank) -> the shards that slot read, in order: a shard starts at its sample i % 10 == 0
    for rank, batches in enumerate(per_rank):
        for k, (z, _, _) in enumerate(batches):
            firsts = [int(i) // SHARD_SIZE for i in z[:, 0] if i % SHARD_SIZE == 0]
            opened.setdefault((k % workers, rank), []).extend(firsts)
    rounds = min(map(len, opened.values()))
    sequence = [opened[w, r][j] for j in range(rounds) for w in range(workers) for r in range(world)]
    assert len(sequence) >= epochs * shards
    for epoch in range(epochs):
        assert sorted(sequence[epoch * shards:(epoch + 1) * shards]) == list(range(shards))


def test_the_order_comes_from_the_seed(dataset):
    samples = stream(dataset, workers=2, buffer=8)
    first, again, other = take(samples, 9), take(samples, 9), take(samples, 9, seed=1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


@pytest.mark.parametrize("start", [1, 4, 7])
def test_starting_at_a_batch_gives_the_rest_of_the_same_order(dataset, start):
    # 2 workers take turns: a start on an odd batch must still come out in order (and across an epoch boundary).
    samples = stream(dataset, workers=2, buffer=8)
    whole = take(samples, 12)
    resumed = take(samples, 12 - start, start=start)
    assert [b[0].tolist() for b in resumed] == [b[0].tolist() for b in whole[start:]]


def rank_batches(directory: Path, monkeypatch, world: int, rank: int, workers: int, buffer: int, start: int,
                 count: int) -> list[list[int]]:
    """z of the `count` batches (4 samples) that rank `rank` gets from global batch `start` on, built here as the
    DataLoader builds them (each worker's ShardStream, taken in turn), so that reads can be counted."""
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (rank, world))
    dataset, per_worker = open_dataset(directory), -(-count // workers)
    by_worker = []
    for worker in range(workers):
        monkeypatch.setattr(streaming, "get_worker_info", lambda worker=worker: SimpleNamespace(id=worker))
        stream = ShardStream(dataset, 4, 0, buffer, workers, start)
        by_worker.append([z[:, 0].long().tolist() for z, _, _ in itertools.islice(stream, per_worker)])
    return [by_worker[j % workers][j // workers] for j in range(count)]


def counting_reads(monkeypatch) -> list[str]:
    """The keys of the records read from now on, in order."""
    reads, records = [], Dataset.records

    def counted(self, urls=None):
        for record in records(self, urls):
            reads.append(record["__key__"])
            yield record

    monkeypatch.setattr(Dataset, "records", counted)
    return reads


@pytest.mark.parametrize("world, workers, buffer", [(1, 1, 8), (1, 3, 25), (2, 2, 8), (2, 1, 40)])
def test_a_resumed_stream_gives_every_rank_the_uninterrupted_batches(dataset, monkeypatch, world, workers, buffer):
    # 4 samples a rank, so an epoch is 60 / (4 * world) batches: starts 17 and 40 resume in a later epoch, and a
    # buffer of 25 or 40 holds records of several shards.
    count = 6
    for rank in range(world):
        whole = rank_batches(dataset, monkeypatch, world, rank, workers, buffer, 0, 40 + count)
        for start in (1, 5, 17, 40):
            resumed = rank_batches(dataset, monkeypatch, world, rank, workers, buffer, start, count)
            assert resumed == whole[start:start + count], (rank, start)


@pytest.mark.parametrize("world, workers", [(1, 2), (2, 1)])
def test_a_resumed_stream_reads_little_of_what_it_skips(dataset, monkeypatch, world, workers):
    """Batch 150: each slot has given out 300 records (5 epochs) and holds 8; it reads about the shards that hold
    those, not the 308 it read before."""
    reads = counting_reads(monkeypatch)
    for rank in range(world):
        rank_batches(dataset, monkeypatch, world, rank, workers, 8, 150, 2)
    skipped = 150 * 4 * world
    assert len(reads) < skipped / 10


def test_more_workers_than_shards_is_refused_in_one_line(dataset):
    with pytest.raises(ValueError) as error:
        stream(dataset, workers=7)
    assert str(error.value) == (f"{dataset}: 6 shard(s) for 7 stream slot(s) (ranks x loader_workers); allowed: at "
                                f"least one shard per slot: lower train.loader_workers or write smaller shards")


def test_class_means_are_the_stored_ones_and_match_the_in_memory_sums(dataset):
    loaded = open_dataset(dataset).load()
    in_memory = PairedSamples(loaded["z"], loaded["label"], loaded["image"], (0.0, 255.0))
    assert torch.equal(stream(dataset).class_mean_images(), in_memory.class_mean_images())


@pytest.mark.parametrize("limit, sizes", [(25, [10, 10, 5]), (None, [10] * 6), (1000, [10] * 6)])
def test_shard_samples_gives_the_first_samples_in_order_with_their_own_labels(dataset, limit, sizes):
    """The train-sample fidelity reads a prefix of the training set: in manifest order, each image with its
    own noise and label, and no further than the limit (or the set's end)."""
    chunks = list(ShardSamples(open_dataset(dataset), limit=limit).chunks(10))
    assert [len(y) for _, y, _ in chunks] == sizes
    z, y, images = (torch.cat(column) for column in zip(*chunks))
    index = torch.arange(sum(sizes))
    assert torch.equal(z[:, 0], index.float()) and torch.equal(y, index % 10)
    assert torch.equal(images.flatten(1).float().mean(1), index.float())


def test_a_student_trains_from_a_stream(tmp_path):
    samples = teacher_samples(320, 1)
    with writing_dataset(tmp_path / "train", shard_size=80, value_range=samples.value_range, num_classes=10) as writer:
        writer.add_batch([f"{i:08d}" for i in range(320)], samples.y, samples.images.float() / 255, {"z": samples.z})
    heldout = teacher_samples(100, 2)
    torch.manual_seed(0)
    student = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8])
    untrained = heldout_fidelity(student, heldout)
    settings = TrainSettings(steps=40, batch_size=32, lr=2e-3, log_every=10, eval_every=100)
    final = distill(student, ProjectionDiscriminator(1, 10, [8, 16, 32]), stream(tmp_path / "train"),
                    heldout, LossSettings(), settings, seed=0)
    assert final["l1"] < untrained["l1"] / 2
