"""One dataset written by several processes (GPUs, machines): part p of P writes the shards k with k % P == p.

A shard's samples are fixed by its index (samples k * shard_size onwards), so each part knows its shards
without talking to the others, and a shard is the same bytes whoever writes it. The parts write into the one
partial directory; a final, single writer (`Part()`, with resume) keeps every whole shard, writes any shard
still missing and joins them into the dataset. A part's class sums travel in a sums file beside its shards
(`SUMS_PATTERN`): integer sums, so adding the parts' gives the sums of one process exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skdcgn.metrics.baseline import MAX_PER_CLASS, ClassMeans
from skdcgn.shards.format import ShardError
from skdcgn.utils.atomic import atomic_file

SUMS_PATTERN = "part-%d-of-%d.sums.npz"  # a finished part's class sums and the shards they cover
SUMS_GLOB = "part-*-of-*.sums.npz"
SHARD_INDEX = re.compile(r"^\.?shard-(\d{6})\.")  # a shard's tar or rows file, whole or partial


@dataclass(frozen=True)
class Part:
    """Which of `count` processes this is (`index` from 0); `Part()` is a lone process, which writes all."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"part {self.index}/{self.count}; allowed: p/P with 0 <= p < P")

    @classmethod
    def parse(cls, text: str) -> "Part":
        """'p/P', e.g. '0/4' for the first of four."""
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit()):
            raise ValueError(f"part {text!r}; allowed: p/P with 0 <= p < P, e.g. 0/4")
        return cls(int(index), int(count))

    @property
    def alone(self) -> bool:
        return self.count == 1

    def owns(self, shard: int) -> bool:
        return shard % self.count == self.index

    def samples(self, total: int, shard_size: int) -> int:
        """How many of the dataset's `total` samples this part writes."""
        return sum(min(shard_size, total - start) for start in range(0, total, shard_size)
                   if self.owns(start // shard_size))

    @property
    def sums_file(self) -> str:
        return SUMS_PATTERN % (self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_index(name: str) -> int | None:
    """The shard a file of the partial directory belongs to; None for other files."""
    match = SHARD_INDEX.match(name)
    return int(match.group(1)) if match else None


def save_sums(path: Path, means: ClassMeans, shards: set[int]) -> None:
    with atomic_file(path) as partial, open(partial, "wb") as file:
        np.savez(file, sums=means.sums.numpy(), counts=means.counts.numpy(), shards=np.array(sorted(shards)))


def load_sums(paths: list[Path], means: ClassMeans) -> set[int]:
    """Adds the sums files' class sums to `means`; returns the shards they cover. Two files covering one shard
    would count it twice: refused, naming both."""
    covered: dict[int, Path] = {}
    for path in sorted(paths):
        with np.load(path, allow_pickle=False) as saved:
            for shard in saved["shards"].tolist():
                if shard in covered:
                    raise ShardError(f"{path} and {covered[shard]} both cover shard {shard}: parts of two runs with "
                                     f"different part counts; delete the partial directory and start again")
                covered[shard] = path
            add_sums(means, torch.from_numpy(saved["sums"]), torch.from_numpy(saved["counts"]))
    return set(covered)


def add_sums(means: ClassMeans, sums: torch.Tensor, counts: torch.Tensor) -> None:
    """Another writer's exact int32 sums into `means`, as if its images had been added one by one."""
    if counts.shape != means.counts.shape:
        raise ShardError(f"class sums of {len(counts)} classes; allowed: {means.num_classes}")
    means.sums = sums if means.sums is None else means.sums + sums
    means.counts += counts
    if int(means.counts.max()) > MAX_PER_CLASS:
        raise ShardError(f"more than {MAX_PER_CLASS} samples of one class: the int32 sums would overflow")
