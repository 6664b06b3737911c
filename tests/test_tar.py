"""The fast shard tar writer and reader: the bytes of webdataset's TarWriter(mtime=0), tars that tar tools read,
WebDataset's records read back, and every tar the writer cannot have written refused."""

import io
import tarfile

import numpy as np
import pytest
import webdataset as wds

from skdcgn.shards.format import ShardError
from skdcgn.shards.reading import decode_array, group_records
from skdcgn.shards.tar import TarFormatError, TarStream, read_members


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


@pytest.mark.parametrize("count", [0, 1, 7, 40])
def test_the_reader_gives_webdatasets_records(tmp_path, count):
    samples = records(count, seed=count)
    write_fast(tmp_path / "fast.tar", samples)
    ours = list(group_records(read_members(tmp_path / "fast.tar")))
    theirs = [{name: data for name, data in record.items() if name not in ("__url__", "__local_path__")}
              for record in wds.WebDataset(str(tmp_path / "fast.tar"), shardshuffle=False, empty_check=False)]
    assert ours == theirs == samples


def tarfile_archive(path, *members: tarfile.TarInfo) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for info in members:
            archive.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)


@pytest.mark.parametrize("name, kind, message", [
    ("0001.sub", tarfile.DIRTYPE, "tar type b'5'"),
    ("0001." + "long" * 30, tarfile.REGTYPE, "tar type b'x'"),  # a name past 100 bytes needs a PAX header
])
def test_the_reader_refuses_what_the_writer_never_writes(tmp_path, name, kind, message):
    member = tarfile.TarInfo(name)
    member.type = kind
    tarfile_archive(tmp_path / "other.tar", member)
    with pytest.raises(TarFormatError, match=message):
        list(read_members(tmp_path / "other.tar"))


def test_the_reader_refuses_a_damaged_or_cut_tar(tmp_path):
    write_fast(tmp_path / "fast.tar", records(3, seed=3))
    whole = (tmp_path / "fast.tar").read_bytes()
    damaged = bytearray(whole)
    damaged[5] ^= 1  # in the first member's name: the checksum no longer matches
    (tmp_path / "damaged.tar").write_bytes(bytes(damaged))
    with pytest.raises(TarFormatError, match="bad header checksum"):
        list(read_members(tmp_path / "damaged.tar"))
    first_size = int(whole[124:136].strip(b"\0 "), 8)
    (tmp_path / "cut.tar").write_bytes(whole[:512 + first_size // 2])
    with pytest.raises(TarFormatError, match="cut short"):
        list(read_members(tmp_path / "cut.tar"))
    (tmp_path / "unended.tar").write_bytes(whole[:512 + -(-first_size // 512) * 512])
    with pytest.raises(TarFormatError, match="end-of-archive"):
        list(read_members(tmp_path / "unended.tar"))


@pytest.mark.parametrize("array", [
    np.arange(16, dtype=np.float32), np.arange(12, dtype=">i8").reshape(3, 4), np.asfortranarray(np.eye(3)),
    np.array(7, dtype=np.uint8), np.zeros((2, 0)), np.array([1.5, -2.0], dtype=np.float16)])
def test_npy_members_decode_as_numpy_loads_them(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    decoded = decode_array(buffer.getvalue())
    expected = np.load(io.BytesIO(buffer.getvalue()))
    assert decoded.dtype == expected.dtype and decoded.shape == expected.shape
    assert np.array_equal(decoded, expected) and decoded.flags.writeable


def test_an_npy_member_of_python_objects_is_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ShardError, match="Python objects"):
        decode_array(buffer.getvalue())
