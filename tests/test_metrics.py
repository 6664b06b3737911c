"""Fidelity metrics: exact values on hand-made cases, the properties that make them metrics, and the baseline."""

import math

import pytest
import torch

from skdcgn.metrics import fidelity as metrics
from skdcgn.metrics.baseline import ClassMeans
from skdcgn.metrics.convergence import steps_to_gain, steps_to_reach
from skdcgn.metrics.fidelity import METRICS, Fidelity, fidelity

torch.set_num_threads(1)


def images(seed: int, n: int = 4, c: int = 3, size: int = 32, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed)) * (hi - lo) + lo


def measure(name: str, pred: torch.Tensor, target: torch.Tensor, value_range=(-1.0, 1.0)) -> dict:
    metric = METRICS[name](value_range)
    metric.update(pred, target)
    return metric.result()


def run(name: str, pred: torch.Tensor, target: torch.Tensor, value_range=(-1.0, 1.0)) -> float:
    return measure(name, pred, target, value_range)[name]


def test_identical_images_are_perfect():
    x = images(0, c=1, lo=0.0)
    result = fidelity("shape", x, x.clone())
    assert result["l1"] == 0.0
    assert result["psnr"] == pytest.approx(metrics.PSNR_CAP)
    assert result["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert result["mask_iou"] == 1.0
    assert result["mask_mean"] == result["mask_mean_target"]


def test_constant_offset_gives_known_l1_and_psnr():
    x = images(1, lo=-0.5, hi=0.5)
    d = 0.25
    assert run("l1", x + d, x) == pytest.approx(d)
    assert run("psnr", x + d, x) == pytest.approx(20 * math.log10(2.0 / d), rel=1e-5)


def test_value_range_sets_psnr_peak_and_ssim_constants():
    x = images(2, c=1, lo=0.2, hi=0.8)
    y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    as_mask, as_texture = run("psnr", y, x, (0.0, 1.0)), run("psnr", y, x, (-1.0, 1.0))
    assert as_texture - as_mask == pytest.approx(20 * math.log10(2.0), rel=1e-5)
    # Larger C1, C2 forgive the same error more.
    assert run("ssim", y, x, (-1.0, 1.0)) > run("ssim", y, x, (0.0, 1.0))


def test_ssim_matches_the_formula_on_a_single_window():
    # An 11x11 image has exactly one valid window, so SSIM is the formula on Gaussian-weighted moments.
    x, y = images(4, n=1, c=1, size=11).double(), images(5, n=1, c=1, size=11).double()
    r = torch.arange(11, dtype=torch.float64) - 5
    w = torch.outer(torch.exp(-(r**2) / 4.5), torch.exp(-(r**2) / 4.5))
    w = w / w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cov = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert run("ssim", x.float(), y.float()) == pytest.approx(expected.item(), abs=1e-5)


def test_ssim_drops_with_noise_and_structure_and_is_symmetric():
    x = images(6, lo=-0.5, hi=0.5)
    gen = torch.Generator().manual_seed(7)
    slight, heavy = (x + s * torch.randn(x.shape, generator=gen) for s in (0.05, 0.3))
    assert 1.0 > run("ssim", slight, x) > run("ssim", heavy, x)
    assert run("ssim", x.flip(-1), x) < 0.5
    assert run("ssim", heavy, x) == pytest.approx(run("ssim", x, heavy), abs=1e-6)


def test_mask_iou_of_two_half_masks():
    left, top = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    left[..., :, :16] = 1.0
    top[..., :16, :] = 0.8
    assert run("mask_iou", left, top, (0.0, 1.0)) == pytest.approx(1 / 3)
    assert run("mask_iou", left, 1.0 - left, (0.0, 1.0)) == 0.0


def test_mask_iou_pools_over_the_batch_and_empty_is_perfect():
    pred, target = torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    assert run("mask_iou", pred, target, (0.0, 1.0)) == 1.0
    pred[0], target[0] = 1.0, 1.0
    pred[1, 0, 0, 0] = 1.0  # a one-pixel miss on an empty target: 0 for that image, tiny when pooled
    assert run("mask_iou", pred, target, (0.0, 1.0)) == pytest.approx(1024 / 1025)


def test_mask_mean_reports_both_sides():
    pred, target = torch.full((2, 1, 16, 16), 0.25), torch.zeros(2, 1, 16, 16)
    assert measure("mask_mean", pred, target, (0.0, 1.0)) == {"mask_mean": 0.25, "mask_mean_target": 0.0}


def test_mask_soft_counts_the_pixels_between_digit_and_background():
    # Per row of 4 pixels: hard 0 and 1, a blend inside the band, a value at each of the band's ends (not inside).
    pred = torch.tensor([0.0, 1.0, 0.5, 0.1]).view(1, 1, 1, 4).expand(2, 1, 4, 4).clone()
    target = torch.tensor([0.0, 1.0, 0.9, 1.0]).view(1, 1, 1, 4).expand(2, 1, 4, 4).clone()
    assert measure("mask_soft", pred, target, (0.0, 1.0)) == {"mask_soft": 0.25, "mask_soft_target": 0.0}


def test_chunking_does_not_change_results(monkeypatch):
    pred, target = images(8, n=7, c=1, lo=0.0), images(9, n=7, c=1, lo=0.0)
    whole = fidelity("shape", pred, target)
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 3 * 16 * 16)  # 3 images of 16x16 per chunk
    assert fidelity("shape", pred, target) == pytest.approx(whole, rel=1e-6)
    # Fed in pieces, as held-out sets are read: the same figures.
    meter = Fidelity("shape")
    for start, stop in ((0, 2), (2, 5), (5, 7)):
        meter.update(pred[start:stop], target[start:stop])
    assert meter.result() == pytest.approx(whole, rel=1e-6)


def test_fidelity_keys_per_mechanism():
    mask, rgb = images(10, c=1, lo=0.0), images(11)
    assert set(fidelity("shape", mask, mask)) == {"l1", "psnr", "ssim", "mask_iou", "mask_mean", "mask_mean_target",
                                                 "mask_soft", "mask_soft_target"}
    for im in ("texture", "background"):
        assert set(fidelity(im, rgb, rgb)) == {"l1", "psnr", "ssim"}


def test_unknown_mechanism_and_mismatched_shapes_are_errors():
    x = images(12)
    with pytest.raises(ValueError, match="shape, texture, background"):
        fidelity("colour", x, x)
    with pytest.raises(ValueError, match="shapes"):
        fidelity("texture", x, x[:2])


def test_class_means_on_a_tiny_set():
    imgs = torch.tensor([0, 10, 20, 255], dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    labels = torch.tensor([1, 0, 1, 2])
    means = ClassMeans(3).add(imgs, labels).means()
    assert means.dtype == torch.float32 and means.shape == (3, 3, 2, 2)
    assert means[:, 0, 0, 0].tolist() == [10.0, 10.0, 255.0]
    # Added batch by batch, in another order: the same exact means.
    pieces = ClassMeans(3).add(imgs[2:], labels[2:]).add(imgs[:2], labels[:2]).means()
    assert torch.equal(pieces, means)
    # The baseline prediction for held-out images is a lookup.
    assert means[torch.tensor([2, 1])][:, 0, 0, 0].tolist() == [255.0, 10.0]


def test_class_means_name_a_missing_class_and_refuse_other_input():
    imgs = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="class 1 "):
        ClassMeans(3).add(imgs, torch.tensor([0, 2, 2])).means()
    with pytest.raises(ValueError, match="outside 0..2"):
        ClassMeans(3).add(imgs, torch.tensor([0, 3, 2]))
    with pytest.raises(ValueError, match="need uint8 images"):
        ClassMeans(3).add(imgs.float(), torch.tensor([0, 1, 2]))


def test_steps_to_gain_finds_when_a_run_won_most_of_its_gain():
    curve = [(100, 0.5), (200, 0.8), (300, 0.88), (400, 0.9)]
    # baseline 0.4, final 0.9: 95 % of the 0.5 gain is reached at 0.875, first at step 300.
    assert steps_to_gain(curve, baseline=0.4) == 300
    assert steps_to_gain(curve, baseline=0.4, fraction=0.5) == 200
    assert steps_to_reach(curve, 0.95) is None
    # A run that never beat the baseline has no gain to win early: it counts its whole length.
    assert steps_to_gain([(100, 0.3), (200, 0.2)], baseline=0.4) == 200
