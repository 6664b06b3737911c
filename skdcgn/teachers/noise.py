"""The noise a teacher takes, drawn from the project's seeded streams (skdcgn.utils.seeds).

Most teachers take standard normal noise. BigGANs are sampled with the truncation trick (Brock et al., 2019):
z = truncation * truncnorm(-2, 2), which trades variety for fidelity. A teacher says which it takes by its
`truncation` (None: standard normal), and its students learn it on the same distribution: every consumer
(teacher sampling, counterfactuals, evaluation) draws noise here.
"""

from __future__ import annotations

import math

import torch

TRUNCATION_BOUND = 2.0


def normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def draw_noise(n: int, dim: int, generator: torch.Generator, truncation: float | None = None) -> torch.Tensor:
    """(n, dim) float32 noise from `generator`: standard normal, or `truncation` times a normal truncated to
    [-2, 2]."""
    if truncation is None:
        return torch.randn(n, dim, generator=generator)
    # Inverse CDF of the truncated normal: one uniform per value (no rejection), so the stream advances by the
    # same amount whatever is drawn, and float64 keeps the tails exact.
    low, high = normal_cdf(-TRUNCATION_BOUND), normal_cdf(TRUNCATION_BOUND)
    p = low + (high - low) * torch.rand(n, dim, generator=generator, dtype=torch.float64)
    z = math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)
    return (truncation * z.clamp(-TRUNCATION_BOUND, TRUNCATION_BOUND)).float()


# Rows per draw of a NoiseStream: a multiple of 16, as torch draws normals in blocks of 16 values; a chunk then
# takes exactly the stream's next values, and the chunks join into the draw of all rows at once.
CHUNK_ROWS = 16_384


class NoiseStream:
    """The rows of `draw_noise(n, dim, generator, truncation)`, drawn a chunk at a time as they are asked for, in
    order: the same values, in memory that does not grow with `n` (a million 128-d rows take 4 GB to draw at
    once). Rows passed over are drawn and dropped, so a part of several processes gets the rows of its shards."""

    def __init__(self, n: int, dim: int, generator: torch.Generator, truncation: float | None = None,
                 chunk_rows: int = CHUNK_ROWS):
        if chunk_rows % 16:
            raise ValueError(f"chunk_rows {chunk_rows}; allowed: a multiple of 16")
        self.dim, self.generator, self.truncation = dim, generator, truncation
        bounds = list(range(0, n, chunk_rows)) + [n]
        # torch draws fewer than 16 normals one by one, another way through the stream: the last rows go with the
        # chunk before them when they are fewer values than that.
        if len(bounds) > 2 and (n - bounds[-2]) * dim < 16:
            del bounds[-2]
        self._sizes = iter(b - a for a, b in zip(bounds, bounds[1:]))
        self._first, self._chunk = 0, torch.empty(0, dim)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows start .. stop - 1; a later call may not ask for rows before the chunk this one ended in."""
        if start < self._first:
            raise ValueError(f"noise row {start} was dropped; rows are drawn in order (from row {self._first} now)")
        pieces = []
        while start < stop:
            while start >= self._first + len(self._chunk):
                self._first += len(self._chunk)
                self._chunk = draw_noise(next(self._sizes), self.dim, self.generator, self.truncation)
            end = min(stop, self._first + len(self._chunk))
            pieces.append(self._chunk[start - self._first:end - self._first])
            start = end
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0]
