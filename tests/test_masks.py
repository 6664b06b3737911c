"""The shape-mechanism study's mask changes: none by default, each doing what it says, reproducible."""

import pytest
import torch

from skdcgn.counterfactuals.masks import change_masks, draw_mask_changes
from skdcgn.settings.compose import MaskChanges


def masks(n: int = 6) -> torch.Tensor:
    """Asymmetric masks: a bar in the top-left quarter, at different heights."""
    out = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        out[i, 0, 1 + i % 4:4 + i % 4, 2:7] = 1.0
    return out


def test_no_change_is_the_default_and_draws_nothing():
    assert not MaskChanges().active and draw_mask_changes(10, 0, MaskChanges()) == {}
    assert torch.equal(change_masks(masks(), MaskChanges(), {}), masks())


def test_a_half_turn_turns_the_mask_upside_down():
    turned = change_masks(masks(), MaskChanges(rotation=180), {"mask_angle": torch.full((6,), 180.0)})
    assert torch.allclose(turned, masks().flip(2, 3), atol=1e-5)


def test_transparency_lets_the_background_through():
    assert torch.equal(change_masks(masks(), MaskChanges(transparency=0.3), {}), masks() * 0.7)


def test_noise_has_its_std_and_does_not_depend_on_batching():
    changes = MaskChanges(noise_std=0.1)
    draws = draw_mask_changes(6, 0, changes)
    grey = torch.full((6, 1, 16, 16), 0.5)  # far from 0 and 1: no clipping
    whole = change_masks(grey, changes, draws)
    halves = torch.cat([change_masks(grey[i:i + 3], changes, {k: v[i:i + 3] for k, v in draws.items()})
                        for i in (0, 3)])
    assert torch.equal(whole, halves)
    assert 0.09 < (whole - grey).std() < 0.11
    assert change_masks(masks(), changes, draws).min() >= 0 and change_masks(masks(), changes, draws).max() <= 1


def test_angles_come_from_the_seed_within_the_range():
    first = draw_mask_changes(500, 0, MaskChanges(rotation=30))
    assert torch.equal(first["mask_angle"], draw_mask_changes(500, 0, MaskChanges(rotation=30))["mask_angle"])
    assert first["mask_angle"].abs().max() <= 30 and first["mask_angle"].std() > 15


def test_blur_gives_crisp_edges_grey_and_keeps_the_digit():
    square = torch.zeros(2, 1, 16, 16)
    square[:, :, 5:11, 5:11] = 1.0
    blurred = change_masks(square, MaskChanges(blur=0.45), {})
    soft = ((blurred > 0.1) & (blurred < 0.9)).sum().item()
    assert soft > 0 and ((square > 0.1) & (square < 0.9)).sum() == 0  # grey edges where there were none
    assert torch.allclose(blurred.sum(), square.sum())  # a weighted mean: the digit's mass stays
    assert blurred.min() >= 0 and blurred.max() <= 1 and blurred[:, :, 7:9, 7:9].min() > 0.99  # inside stays
    full = torch.ones(1, 1, 16, 16)  # the border repeats its pixels: a full mask does not fade at the edges
    assert torch.allclose(change_masks(full, MaskChanges(blur=2.0), {}), full)
    assert draw_mask_changes(2, 0, MaskChanges(blur=0.45)) == {}  # nothing random to store


@pytest.mark.parametrize("bad, allowed", [({"noise_std": -1}, "float >= 0.0"), ({"blur": -0.5}, "float >= 0.0"),
                                          ({"rotation": 200}, "float >= 0.0 and <= 180.0"),
                                          ({"transparency": 1.5}, "float >= 0.0 and <= 1.0")])
def test_out_of_range_changes_are_refused(bad, allowed):
    with pytest.raises(ValueError, match=f"out of range; allowed: {allowed}$"):
        MaskChanges(**bad)


def test_composites_use_the_changed_masks():
    from skdcgn.counterfactuals.composite import render
    from skdcgn.counterfactuals.inputs import counterfactual_inputs
    from skdcgn.teachers.synthetic import SyntheticTeacher

    teacher = SyntheticTeacher()
    mechanisms = teacher.mechanisms()
    inputs = counterfactual_inputs(teacher.z_dims, teacher.num_classes, 8, seed=0)
    background = mechanisms["background"](*inputs["background"])
    see_through = render(mechanisms, inputs, 0, 8, changes=MaskChanges(transparency=1.0))
    assert torch.allclose(see_through, background)  # no digit left: x = 0 * f + 1 * b
    assert not torch.allclose(render(mechanisms, inputs, 0, 8), background)


def test_denoising_removes_speckle_and_keeps_strokes():
    clean = masks()
    speckled = clean.clone()
    speckled[:, 0, 12, 12] = 1.0  # an isolated foreground pixel
    middle_rows = 2 + torch.arange(6) % 4
    speckled[torch.arange(6), 0, middle_rows, 4] = 0.0  # a hole inside each bar
    denoised = change_masks(speckled, MaskChanges(denoise=True), {})
    assert torch.equal(denoised[:, :, 8:, 8:], torch.zeros(6, 1, 8, 8))
    assert (denoised[torch.arange(6), 0, middle_rows, 4] == 1.0).all()
    # A 3-pixel-thick bar survives whole, corners aside (a median of 4 of 9 on-pixels is off).
    assert (denoised * clean).sum() >= clean.sum() - 4 * 6
    assert draw_mask_changes(6, 0, MaskChanges(denoise=True)) == {}  # nothing random to store


def test_counterfactuals_per_shape_repeat_each_shape_with_new_textures():
    from skdcgn.counterfactuals.inputs import counterfactual_inputs

    z_dims = {"shape": 4, "texture": 3, "background": 3}
    inputs = counterfactual_inputs(z_dims, 10, 10, seed=0, per_shape=4)  # 10 is not a multiple of 4: 3 shapes
    z, y = inputs["shape"]
    assert len(y) == 10 and len(torch.unique(z, dim=0)) == 3
    assert torch.equal(z[:4], z[0].expand(4, 4)) and torch.equal(y[:4], y[0].expand(4))
    assert len(torch.unique(inputs["texture"][0], dim=0)) == 10
    single = counterfactual_inputs(z_dims, 10, 10, seed=0)
    assert len(torch.unique(single["shape"][0], dim=0)) == 10


def test_counterfactuals_drawn_on_any_device_match_the_cpus(device):
    from skdcgn.counterfactuals.composite import render
    from skdcgn.counterfactuals.inputs import counterfactual_inputs
    from skdcgn.teachers.synthetic import SyntheticTeacher

    teacher = SyntheticTeacher()
    inputs = counterfactual_inputs(teacher.z_dims, teacher.num_classes, 16, seed=0)
    on_cpu = render(teacher.mechanisms(), inputs, 0, 16)
    moved = render(SyntheticTeacher().to(device).mechanisms(), inputs, 0, 16, device=device)
    assert moved.device.type == "cpu"  # composites come back for the writer, whatever ran the mechanisms
    torch.testing.assert_close(moved, on_cpu, atol=1e-5, rtol=0)
