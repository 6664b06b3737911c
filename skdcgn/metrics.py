"""Fidelity metrics of a student's output against the teacher's, as a registry of small named functions.

Every metric maps (pred, target, value_range) over float batches (B, C, H, W) to a flat dict of floats, so
the results of several metrics merge into one dict that a logger can take as is. Evaluation is in float32 on
the CPU, in chunks, without autograd, whatever device or dtype the inputs come from.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from skdcgn.teachers.base import VALUE_RANGE

Metric = Callable[[torch.Tensor, torch.Tensor, tuple[float, float]], dict[str, float]]

METRICS: dict[str, Metric] = {}
FIDELITY = {
    "shape": ("l1", "psnr", "ssim", "mask_iou", "mask_mean"),
    "texture": ("l1", "psnr", "ssim"),
    "background": ("l1", "psnr", "ssim"),
}

# The one number per mechanism that convergence is judged on (higher is better for each).
HEADLINE = {"shape": "mask_iou", "texture": "psnr", "background": "psnr"}

CHUNK = 1024  # images per step: bounds the float32 copies and SSIM's five filtered maps
PSNR_CAP = 100.0  # dB reported for identical images, so that averages stay finite
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # Wang et al. 2004
MASK_THRESHOLD = 0.5


def register(fn: Metric) -> Metric:
    """Add fn to METRICS under its own name, evaluated without autograd."""
    METRICS[fn.__name__] = torch.no_grad()(fn)
    return METRICS[fn.__name__]


def _chunks(pred: torch.Tensor, target: torch.Tensor):
    """Yield matching float32 CPU chunks of pred and target, after checking that they line up."""
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two equal (B, C, H, W) shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    for start in range(0, pred.shape[0], CHUNK):
        yield (
            pred[start : start + CHUNK].detach().to("cpu", torch.float32),
            target[start : start + CHUNK].detach().to("cpu", torch.float32),
        )


@register
def l1(pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> dict[str, float]:
    """Mean absolute error over all pixels, in the images' own units."""
    total = sum((p - t).abs().sum(dtype=torch.float64).item() for p, t in _chunks(pred, target))
    return {"l1": total / pred.numel()}


@register
def psnr(pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> dict[str, float]:
    """Peak signal-to-noise ratio per image with peak = hi - lo, averaged over images, capped at PSNR_CAP."""
    peak_sq = (value_range[1] - value_range[0]) ** 2
    # An MSE floor of peak^2 * 10^(-cap/10) makes the cap exact and keeps log10 away from zero.
    floor = peak_sq * 10 ** (-PSNR_CAP / 10)
    total = 0.0
    for p, t in _chunks(pred, target):
        mse = (p - t).pow(2).flatten(1).mean(1).double().clamp_min(floor)
        total += (10 * torch.log10(peak_sq / mse)).sum().item()
    return {"psnr": total / pred.shape[0]}


def _gaussian_window(channels: int) -> torch.Tensor:
    """A normalised SSIM_WINDOW^2 Gaussian, one copy per channel for a grouped convolution."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float32) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)


@register
def ssim(pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> dict[str, float]:
    """Structural similarity, Gaussian window, per channel over the valid region (no padding), averaged.

    Valid windows only, as in Wang et al.'s reference code: padding would invent structure at the borders.
    """
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
    span = value_range[1] - value_range[0]
    c1, c2 = (SSIM_K1 * span) ** 2, (SSIM_K2 * span) ** 2
    window = _gaussian_window(pred.shape[1])
    total = 0.0
    for p, t in _chunks(pred, target):
        # One grouped convolution filters the five local statistics of every channel at once.
        stats = torch.cat([p, t, p * p, t * t, p * t], dim=1)
        mu_p, mu_t, pp, tt, pt = F.conv2d(stats, window.repeat(5, 1, 1, 1), groups=stats.shape[1]).chunk(5, dim=1)
        var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
        ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
        total += ssim_map.flatten(1).mean(1).sum(dtype=torch.float64).item()
    return {"ssim": total / pred.shape[0]}


@register
def mask_iou(pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> dict[str, float]:
    """IoU of the masks pred > 0.5 and target > 0.5, pooled over the batch; 1.0 when both are empty throughout."""
    inter = union = 0
    for p, t in _chunks(pred, target):
        p, t = p > MASK_THRESHOLD, t > MASK_THRESHOLD
        inter += (p & t).sum().item()
        union += (p | t).sum().item()
    return {"mask_iou": inter / union if union else 1.0}


@register
def mask_mean(pred: torch.Tensor, target: torch.Tensor, value_range: tuple[float, float]) -> dict[str, float]:
    """Mean mask value of pred and of target: a student drifting to all-foreground shows here first."""
    sums = [0.0, 0.0]
    for p, t in _chunks(pred, target):
        sums[0] += p.sum(dtype=torch.float64).item()
        sums[1] += t.sum(dtype=torch.float64).item()
    return {"mask_mean": sums[0] / pred.numel(), "mask_mean_target": sums[1] / target.numel()}


def fidelity(im: str, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """All metrics FIDELITY lists for mechanism im, in its value range, merged into one flat dict."""
    if im not in FIDELITY:
        raise ValueError(f"unknown mechanism {im!r}; expected one of {', '.join(FIDELITY)}")
    results: dict[str, float] = {}
    for name in FIDELITY[im]:
        results.update(METRICS[name](pred, target, VALUE_RANGE[im]))
    return results


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first step of a (step, value) curve at which value >= target; None when it never gets there."""
    return next((step for step, value in curve if value >= target), None)


def steps_to_gain(curve: list[tuple[int, float]], baseline: float, fraction: float = 0.95) -> int:
    """Steps a run took to win `fraction` of its final gain over the class-mean baseline: when "converges
    faster" is a number. Scale-free (IoU and dB alike); a run that never beat the baseline counts its last step."""
    final = curve[-1][1]
    return steps_to_reach(curve, baseline + fraction * max(final - baseline, 0.0)) or curve[-1][0]


@torch.no_grad()
def class_mean_images(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean image (K, C, H, W), float32, in the units of images (a uint8 input gives 0..255 means).

    means[labels] is the baseline a student has to beat: it knows the class and nothing else. The linear
    shards.decode_images maps uint8 means into a value range exactly as it maps the images themselves.
    """
    if labels.shape != images.shape[:1]:
        raise ValueError(f"need one label per image, got {tuple(labels.shape)} for {images.shape[0]} images")
    labels = labels.detach().to("cpu", torch.long)
    counts = torch.bincount(labels, minlength=num_classes)
    if counts.numel() > num_classes:
        raise ValueError(f"labels go up to {labels.max().item()} but num_classes is {num_classes}")
    for k in range(num_classes):
        if counts[k] == 0:
            raise ValueError(f"class {k} has no sample, so it has no mean image")
    # float64 sums: 100k additions of values up to 255 would lose digits in float32.
    sums = torch.zeros(num_classes, *images.shape[1:], dtype=torch.float64)
    for start in range(0, images.shape[0], CHUNK):
        chunk = images[start : start + CHUNK].detach().to("cpu", torch.float64)
        sums.index_add_(0, labels[start : start + CHUNK], chunk)
    return (sums / counts.view(-1, *[1] * (images.dim() - 1))).float()
