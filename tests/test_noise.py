"""Teacher noise: standard normal by default, the truncation trick's truncated normal where a teacher asks."""

from __future__ import annotations

import math

import pytest
import torch

from skdcgn.counterfactuals.inputs import counterfactual_inputs
from skdcgn.teachers.noise import TRUNCATION_BOUND, draw_noise

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
