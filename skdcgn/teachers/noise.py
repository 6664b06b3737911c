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
