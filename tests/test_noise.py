"""Teacher noise: standard normal by default, the truncation trick's truncated normal where a teacher asks."""

from __future__ import annotations

import math

import pytest
import torch

from skdcgn.counterfactuals.inputs import counterfactual_inputs
from skdcgn.teachers.noise import TRUNCATION_BOUND, NoiseStream, draw_noise

# Standard deviation of a standard normal truncated to [-2, 2]: sqrt(1 - 2 * 2 * phi(2) / (Phi(2) - Phi(-2))).
PHI_2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNCATED_STD = math.sqrt(1 - 4 * PHI_2 / math.erf(2 / math.sqrt(2)))


def test_without_truncation_the_noise_is_the_generators_standard_normal():
    assert torch.equal(draw_noise(5, 7, torch.Generator().manual_seed(3)),
                       torch.randn(5, 7, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("truncation", [0.5, 1.0])
def test_truncated_noise_has_the_truncated_normals_bounds_and_spread(truncation):
    z = draw_noise(400, 500, torch.Generator().manual_seed(0), truncation)
    assert z.dtype == torch.float32 and z.shape == (400, 500)
    assert z.abs().max() <= TRUNCATION_BOUND * truncation
    assert z.abs().max() > 0.99 * TRUNCATION_BOUND * truncation  # the tails are reached, not cut short
    assert abs(z.mean().item()) < 0.005 * truncation
    assert abs(z.std().item() - truncation * TRUNCATED_STD) < 0.005 * truncation


def test_truncated_noise_is_reproducible_from_its_seed():
    def draw(seed: int) -> torch.Tensor:
        return draw_noise(3, 128, torch.Generator().manual_seed(seed), 0.5)

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


def test_counterfactual_inputs_follow_the_teachers_truncation():
    z_dims = {"shape": 128, "texture": 128, "background": 128}
    inputs = counterfactual_inputs(z_dims, 1000, 64, seed=0, truncation=0.5)
    for im, (z, y) in inputs.items():
        assert z.abs().max() <= 1.0, im
        assert y.max() < 1000
    plain = counterfactual_inputs(z_dims, 1000, 64, seed=0)
    assert plain["texture"][0].abs().max() > 1.0


@pytest.mark.parametrize("truncation", [None, 0.5])
@pytest.mark.parametrize("n, dim", [(1, 8), (33, 1), (100, 8), (257, 3), (300, 128)])
def test_a_noise_stream_gives_the_rows_of_one_draw_in_any_batches(n, dim, truncation):
    """Drawn a chunk at a time (here 32 rows, so that chunks and batches fall across each other), the rows are
    those of one draw of all of them, short last chunks of fewer than 16 values included."""
    whole = draw_noise(n, dim, torch.Generator().manual_seed(1), truncation)
    stream = NoiseStream(n, dim, torch.Generator().manual_seed(1), truncation, chunk_rows=32)
    stops = list(range(0, n, 7))[1:] + [n]
    batches = [stream.rows(start, stop) for start, stop in zip([0] + stops, stops)]
    assert torch.equal(torch.cat(batches), whole)


def test_a_noise_stream_skips_rows_and_refuses_dropped_ones():
    whole = draw_noise(200, 16, torch.Generator().manual_seed(2))
    stream = NoiseStream(200, 16, torch.Generator().manual_seed(2), chunk_rows=32)
    assert torch.equal(stream.rows(150, 170), whole[150:170])  # as a part, which samples only its own shards
    with pytest.raises(ValueError, match="noise row 10 was dropped"):
        stream.rows(10, 20)
