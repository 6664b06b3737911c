from pathlib import Path

import numpy as np
import pytest
import torch

from skdcgn.shards import ShardError, load_dataset, validate, writing_dataset

VALUE_RANGE = (-1.0, 1.0)


def write(directory: Path, n: int = 50, shard_size: int = 20, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=generator)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    with writing_dataset(directory, shard_size=shard_size, value_range=VALUE_RANGE, info={"im": "texture"}) as w:
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
