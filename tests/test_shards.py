import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from skdcgn.shards.codec import ImageCodec
from skdcgn.shards.format import CLASS_MEANS, HostPixels, ShardError, decode_images
from skdcgn.shards.reading import open_dataset
from skdcgn.shards.validation import validate
from skdcgn.shards.workers import ShardSink
from skdcgn.shards.writer import writing_dataset

VALUE_RANGE = (-1.0, 1.0)


def load_dataset(directory: Path) -> dict:
    return open_dataset(directory).load()


def write(directory: Path, n: int = 50, shard_size: int = 20, seed: int = 0, **options) -> dict:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=generator)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    with writing_dataset(directory, shard_size=shard_size, value_range=VALUE_RANGE, info={"im": "texture"},
                         **options) as w:
        for start in range(0, n, 16):
            stop = min(start + 16, n)
            w.add_batch([f"{i:08d}" for i in range(start, stop)], labels[start:stop], images[start:stop],
                        {"z": z[start:stop]})
    return {"z": z, "labels": labels, "images": images}


def test_round_trip_keeps_each_sample_together(tmp_path):
    written = write(tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds")
    assert loaded["key"] == [f"{i:08d}" for i in range(50)]
    assert torch.equal(loaded["z"], written["z"])  # float32 noise is stored exactly
    assert torch.equal(loaded["label"], written["labels"])
    decoded = loaded["image"].float() / 127.5 - 1
    assert (decoded - written["images"]).abs().max() <= 1 / 255 + 1e-6  # 8-bit PNG: half a level of rounding


def test_same_samples_give_same_bytes(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "shard-000002.tar" in files and "manifest.parquet" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_writer_processes_write_the_bytes_of_the_teachers_own_process(tmp_path):
    write(tmp_path / "inline")
    write(tmp_path / "workers", writers=2)  # 3 shards: worker 0 writes shards 0 and 2, worker 1 shard 1
    files = sorted(p.name for p in (tmp_path / "inline").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "workers").iterdir())
    for name in files:
        assert (tmp_path / "inline" / name).read_bytes() == (tmp_path / "workers" / name).read_bytes(), name
    assert validate(tmp_path / "workers")["num_samples"] == 50


def test_a_failing_writer_process_fails_the_write_in_one_line(tmp_path, monkeypatch):
    def disk_full(sink, piece):
        raise OSError("No space left on device")

    monkeypatch.setattr(ShardSink, "write", disk_full)  # the forked worker inherits it
    with pytest.raises(ShardError) as error:
        write(tmp_path / "ds", writers=1)
    assert str(error.value) == "a shard writer process failed: OSError: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.partial"]


def test_jpeg_images_are_smaller_and_close(tmp_path):
    # Smooth images, as teacher textures are: JPEG's 8x8 cosine blocks are made for them.
    ramp = torch.linspace(-1, 1, 32)
    colours = torch.rand(10, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    images = (ramp[None, None, :, None] * ramp[None, None, None, :]).repeat(10, 3, 1, 1) * colours
    for codec in (ImageCodec(format="png"), ImageCodec(format="jpeg", quality=90)):
        with writing_dataset(tmp_path / codec.format, shard_size=10, value_range=VALUE_RANGE, codec=codec) as w:
            w.add_batch([f"{i:08d}" for i in range(10)], torch.arange(10), images, {"z": torch.zeros(10, 2)})
    jpeg, png = load_dataset(tmp_path / "jpeg"), load_dataset(tmp_path / "png")
    assert validate(tmp_path / "jpeg")["members"] == ["cls", "jpg", "z.npy"]
    # Member sizes, not tar sizes: a tar is padded to whole 10 KiB records, which can hide the difference.
    assert image_bytes(tmp_path / "jpeg") < image_bytes(tmp_path / "png")
    error = (jpeg["image"].float() - png["image"].float()).abs()
    assert 0 < error.mean() < 2  # lossy, by under 1 % of the range on average


def image_bytes(directory) -> int:
    with tarfile.open(directory / "shard-000000.tar") as tar:
        return sum(member.size for member in tar.getmembers() if member.name.endswith((".png", ".jpg")))


def test_no_partial_directory_survives_a_complete_write(tmp_path):
    write(tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_failed_write_leaves_no_complete_looking_dataset(tmp_path):
    with pytest.raises(RuntimeError):
        with writing_dataset(tmp_path / "ds", shard_size=10, value_range=VALUE_RANGE) as w:
            w.add_batch(["00000000"], torch.tensor([1]), torch.zeros(1, 3, 8, 8), {"z": torch.zeros(1, 2)})
            raise RuntimeError("killed")
    assert not (tmp_path / "ds").exists()
    with pytest.raises(ShardError, match="not a shard dataset"):
        validate(tmp_path / "ds")


def truncate_mid_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:700])


def truncate_at_sample_boundary(path: Path) -> None:
    # Drop the end-of-archive blocks: every remaining record is whole, which tar tools accept silently.
    path.write_bytes(path.read_bytes()[:-1024])


def zero_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(200)
    assert bytes(data) != path.read_bytes()  # the damage must be real, not padding that was zero already
    path.write_bytes(bytes(data))


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


@pytest.mark.parametrize("damage, message", [
    (truncate_mid_header, "truncated"),
    (truncate_at_sample_boundary, "truncated"),
    (zero_bytes, "sha256"),
    (garbage, "sha256"),
    (lambda p: p.write_bytes(b""), "truncated"),
    (lambda p: p.unlink(), "missing shard"),
])
def test_damaged_shard_is_named(tmp_path, damage, message):
    write(tmp_path / "ds")
    damage(tmp_path / "ds" / "shard-000001.tar")
    with pytest.raises(ShardError, match=message) as error:
        load_dataset(tmp_path / "ds")
    assert "shard-000001.tar" in str(error.value)


def test_unreadable_manifest_is_named(tmp_path):
    write(tmp_path / "ds")
    (tmp_path / "ds" / "manifest.parquet").write_bytes(b"not parquet")
    with pytest.raises(ShardError, match="manifest.parquet: unreadable"):
        validate(tmp_path / "ds")


def test_each_samples_noise_is_stored_once_in_its_record(tmp_path):
    write(tmp_path / "ds")
    manifest = pq.read_table(tmp_path / "ds" / "manifest.parquet")
    assert manifest.column_names == ["key", "label", "shard"]
    assert validate(tmp_path / "ds")["arrays"] == ["z"]


def test_class_means_are_summed_as_the_shards_are_written(tmp_path):
    written = write(tmp_path / "ds", num_classes=10)
    means = open_dataset(tmp_path / "ds").class_means()
    pixels = load_dataset(tmp_path / "ds")["image"].double()
    expected = torch.stack([pixels[written["labels"] == c].mean(0) for c in range(10)]).float()
    assert means.dtype == torch.float32 and torch.equal(means, expected)
    (tmp_path / "ds" / CLASS_MEANS).unlink()
    with pytest.raises(ShardError, match="class_means.npy: missing"):
        open_dataset(tmp_path / "ds")


def test_reading_in_chunks_gives_every_sample_once_in_order(tmp_path):
    write(tmp_path / "ds")
    chunks = list(open_dataset(tmp_path / "ds").chunks(16))
    assert [len(c["key"]) for c in chunks] == [16, 16, 16, 2]
    assert sum((c["key"] for c in chunks), []) == [f"{i:08d}" for i in range(50)]


def test_pixels_come_back_from_any_device_at_their_levels(device):
    """Images on the device (on CUDA: rounded there, copied to pinned memory without waiting) reach the CPU as
    the 8-bit levels they were made from, channels last."""
    levels = torch.randint(0, 256, (6, 3, 5, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = decode_images(levels, VALUE_RANGE).to(device)
    pixels = HostPixels(images, VALUE_RANGE)
    assert np.array_equal(pixels.numpy(), levels.permute(0, 2, 3, 1).numpy())


def test_reading_shows_progress_and_writing_checks_quietly(tmp_path, capsys):
    """A reader's deep check and the decoding of a whole dataset read every byte: they report progress; the
    writer's own shallow check stays silent."""
    write(tmp_path / "ds")
    assert capsys.readouterr().out == ""
    load_dataset(tmp_path / "ds")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("validate ds: 1/3") and lines[2].startswith("validate ds: 3/3")
    assert lines[3].startswith("load ds: 50/50")
