"""Is a dataset on disk whole? Every shard checked against the manifest, because WebDataset, tarfile and
`tar tf` all accept a truncated tar without a word."""

from __future__ import annotations

import io
from pathlib import Path

from skdcgn.shards.format import CLASS_MEANS, TAR_BLOCK, ShardError, read_meta, read_parquet
from skdcgn.shards.tar import TarFormatError, read_members
from skdcgn.utils.hashing import file_sha256
from skdcgn.utils.progress import progress


def validate(directory: Path, deep: bool = True) -> dict:
    """Check every shard against the manifest; raise ShardError naming the first bad shard. Returns the meta.

    Deep (readers, once per stage): sha256 and every member of every shard. `deep=False` (the writer, which
    recorded both as it wrote): sizes, end blocks and counts."""
    directory = Path(directory)
    meta = read_meta(directory)
    shard_table = read_parquet(directory / "shards.parquet").to_pylist()
    manifest = read_parquet(directory / "manifest.parquet")
    if sum(row["n_samples"] for row in shard_table) != meta["num_samples"] or manifest.num_rows != meta["num_samples"]:
        raise ShardError(f"{directory}: shard table, manifest and dataset.json disagree on the number of samples")
    keys_by_shard: dict[str, list[str]] = {}
    for key, shard in zip(manifest.column("key").to_pylist(), manifest.column("shard").to_pylist()):
        keys_by_shard.setdefault(shard, []).append(key)
    # Deep checks read every byte, so they show progress (a plain line every tenth of the shards); the writer's
    # shallow check is quick and silent.
    with progress(f"validate {directory.name}", len(shard_table), every=max(1, len(shard_table) // 10),
                  stream=None if deep else io.StringIO()) as advance:
        for row in shard_table:
            _check_shard(directory / row["name"], row, keys_by_shard.get(row["name"], []), meta["members"], deep)
            advance()
    if meta.get("class_means") and not (directory / CLASS_MEANS).is_file():
        raise ShardError(f"{directory / CLASS_MEANS}: missing (dataset.json lists class means)")
    return meta


def _check_shard(path: Path, row: dict, keys: list[str], members: list[str], deep: bool) -> None:
    if not path.is_file():
        raise ShardError(f"{path}: missing shard")
    size = path.stat().st_size
    if size != row["bytes"] or size % TAR_BLOCK:
        raise ShardError(f"{path}: truncated or altered ({size} bytes, manifest says {row['bytes']})")
    if deep and file_sha256(path) != row["sha256"]:
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted)")
    # The hash only proves the file is what was written; the end blocks and members prove it was a whole tar.
    with open(path, "rb") as handle:
        handle.seek(size - 2 * TAR_BLOCK)
        if size < 2 * TAR_BLOCK or handle.read(2 * TAR_BLOCK).strip(b"\0"):
            raise ShardError(f"{path}: no end-of-archive blocks (truncated)")
    if not deep:
        return
    found = _members_by_key(path)
    if list(found) != keys:
        raise ShardError(f"{path}: holds {len(found)} samples, manifest lists {len(keys)} (or another order)")
    for key, names in found.items():
        if sorted(names) != members:
            raise ShardError(f"{path}: sample {key} has members {sorted(names)}, expected {members}")


def _members_by_key(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    try:
        for name, _ in read_members(path):
            key, _, suffix = name.partition(".")
            found.setdefault(key, []).append(suffix)
    except TarFormatError as error:
        raise ShardError(str(error)) from None
    return found
