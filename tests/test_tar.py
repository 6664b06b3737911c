"""The fast shard tar writer: the bytes of webdataset's TarWriter(mtime=0), and tars that tar tools read."""

import tarfile

import numpy as np
import pytest
import webdataset as wds

from skdcgn.shards.tar import TarStream


def records(count: int, seed: int) -> list[dict]:
    """Members of every awkward size: empty, one byte, exactly a block, a block and one byte, large."""
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 511, 512, 513, 1024, 5000]
    return [{"__key__": f"{i:08d}", "cls": str(i % 10).encode(),
             "png": rng.bytes(sizes[i % len(sizes)]), "z.npy": rng.bytes(int(rng.integers(0, 3000)))}
            for i in range(count)]


def write_fast(path, samples) -> None:
    stream = TarStream(path)
    for record in samples:
        for member in sorted(name for name in record if name != "__key__"):
            stream.add(f"{record['__key__']}.{member}", record[member])
    stream.close()


@pytest.mark.parametrize("count", [0, 1, 7, 40])  # archives ending anywhere inside a 20-block record
def test_the_bytes_are_webdatasets(tmp_path, count):
    samples = records(count, seed=count)
    write_fast(tmp_path / "fast.tar", samples)
    reference = wds.TarWriter(str(tmp_path / "wds.tar"), mtime=0, encoder=False)
    for record in samples:
        reference.write(record)
    reference.close()
    assert (tmp_path / "fast.tar").read_bytes() == (tmp_path / "wds.tar").read_bytes()


def test_tarfile_reads_back_every_member(tmp_path):
    samples = records(9, seed=1)
    write_fast(tmp_path / "fast.tar", samples)
    with tarfile.open(tmp_path / "fast.tar") as archive:
        read = {member.name: archive.extractfile(member).read() for member in archive}
    assert read == {f"{r['__key__']}.{name}": data for r in samples for name, data in r.items() if name != "__key__"}


def test_a_name_too_long_for_ustar_is_refused(tmp_path):
    stream = TarStream(tmp_path / "x.tar")
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        stream.add("k" * 101, b"")
