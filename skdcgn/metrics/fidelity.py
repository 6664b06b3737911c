"""Fidelity of a student's output against the teacher's, as a registry of small metrics that accumulate.

A metric is built for a value range, takes batches with `update(pred, target)` (float (B, C, H, W), any device
or dtype) and gives a flat dict of floats with `result()`: the held-out set is measured chunk by chunk, so memory
does not grow with its size, and the results of several metrics merge into one dict that a logger takes as is.
Sums are float64 on the CPU, without autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from skdcgn.mechanisms import VALUE_RANGE

METRICS: dict[str, type] = {}
FIDELITY = {
    "shape": ("l1", "psnr", "ssim", "mask_iou", "mask_mean", "mask_soft"),
    "texture": ("l1", "psnr", "ssim"),
    "background": ("l1", "psnr", "ssim"),
}
# The one number per mechanism that convergence is judged on (higher is better for each).
HEADLINE = {"shape": "mask_iou", "texture": "psnr", "background": "psnr"}

# Pixels per step (1,024 images at 32x32, 16 at 256x256): bounds the float32 copies, SSIM's five filtered maps
# and, where a student renders the chunk, its activations. A count of images would not: at 256x256 a chunk of
# 1,024 took a student's evaluation to 20 GB.
CHUNK_PIXELS = 1024 * 32 * 32
PSNR_CAP = 100.0  # dB reported for identical images, so that averages stay finite
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # Wang et al. 2004
MASK_THRESHOLD = 0.5
# A mask value in this open band is neither foreground nor background: the composite shows a blend of the two there.
SOFT_BAND = (0.1, 0.9)


def images_per_chunk(height: int, width: int) -> int:
    return max(1, CHUNK_PIXELS // (height * width))


def register(name: str):
    """Add a metric class to METRICS under `name`."""
    def add(cls: type) -> type:
        METRICS[name] = cls
        return cls
    return add


class Metric:
    """Sums over every image seen; `result` divides. Subclasses fill `add` and `result`."""

    def __init__(self, value_range: tuple[float, float]):
        self.value_range = value_range
        self.images = self.values = 0
        self.sums: list[float] = [0.0, 0.0]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(f"expected two equal (B, C, H, W) shapes, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        step = images_per_chunk(*pred.shape[2:])
        for start in range(0, pred.shape[0], step):
            p = pred[start:start + step].detach().to("cpu", torch.float32)
            t = target[start:start + step].detach().to("cpu", torch.float32)
            self.add(p, t)
            self.images += p.shape[0]
            self.values += p.numel()

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        raise NotImplementedError


@register("l1")
class L1(Metric):
    """Mean absolute error over all pixels, in the images' own units."""

    def add(self, pred, target):
        self.sums[0] += (pred - target).abs().sum(dtype=torch.float64).item()

    def result(self):
        return {"l1": self.sums[0] / self.values}


@register("psnr")
class PSNR(Metric):
    """Peak signal-to-noise ratio per image with peak = hi - lo, averaged over images, capped at PSNR_CAP."""

    def add(self, pred, target):
        peak_sq = (self.value_range[1] - self.value_range[0]) ** 2
        # An MSE floor of peak^2 * 10^(-cap/10) makes the cap exact and keeps log10 away from zero.
        mse = (pred - target).pow(2).flatten(1).mean(1).double().clamp_min(peak_sq * 10 ** (-PSNR_CAP / 10))
        self.sums[0] += (10 * torch.log10(peak_sq / mse)).sum().item()

    def result(self):
        return {"psnr": self.sums[0] / self.images}


def _gaussian_window(channels: int) -> torch.Tensor:
    """A normalised SSIM_WINDOW^2 Gaussian, one copy per channel for a grouped convolution."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float32) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW)


@register("ssim")
class SSIM(Metric):
    """Structural similarity, Gaussian window, per channel over the valid region (no padding), averaged.

    Valid windows only, as in Wang et al.'s reference code: padding would invent structure at the borders.
    """

    def add(self, pred, target):
        if min(pred.shape[-2:]) < SSIM_WINDOW:
            raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
        span = self.value_range[1] - self.value_range[0]
        c1, c2 = (SSIM_K1 * span) ** 2, (SSIM_K2 * span) ** 2
        window = _gaussian_window(pred.shape[1])
        # One grouped convolution filters the five local statistics of every channel at once.
        stats = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
        mu_p, mu_t, pp, tt, pt = F.conv2d(stats, window.repeat(5, 1, 1, 1), groups=stats.shape[1]).chunk(5, dim=1)
        var_p, var_t, cov = pp - mu_p**2, tt - mu_t**2, pt - mu_p * mu_t
        ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
        self.sums[0] += ssim_map.flatten(1).mean(1).sum(dtype=torch.float64).item()

    def result(self):
        return {"ssim": self.sums[0] / self.images}


@register("mask_iou")
class MaskIoU(Metric):
    """IoU of the masks pred > 0.5 and target > 0.5, pooled over all images; 1.0 when both are empty throughout."""

    def add(self, pred, target):
        p, t = pred > MASK_THRESHOLD, target > MASK_THRESHOLD
        self.sums[0] += (p & t).sum().item()
        self.sums[1] += (p | t).sum().item()

    def result(self):
        return {"mask_iou": self.sums[0] / self.sums[1] if self.sums[1] else 1.0}


@register("mask_mean")
class MaskMean(Metric):
    """Mean mask value of pred and of target: a student drifting to all-foreground shows here first."""

    def add(self, pred, target):
        self.sums[0] += pred.sum(dtype=torch.float64).item()
        self.sums[1] += target.sum(dtype=torch.float64).item()

    def result(self):
        return {"mask_mean": self.sums[0] / self.values, "mask_mean_target": self.sums[1] / self.values}


@register("mask_soft")
class MaskSoft(Metric):
    """Fraction of mask pixels inside SOFT_BAND, of pred and of target: blurred edges raise it, which IoU at 0.5
    does not see, and a composite shows them as blends of foreground and background."""

    def add(self, pred, target):
        low, high = SOFT_BAND
        self.sums[0] += ((pred > low) & (pred < high)).sum().item()
        self.sums[1] += ((target > low) & (target < high)).sum().item()

    def result(self):
        return {"mask_soft": self.sums[0] / self.values, "mask_soft_target": self.sums[1] / self.values}


class Fidelity:
    """Every metric FIDELITY lists for mechanism `im`, in its value range, fed chunk by chunk."""

    def __init__(self, im: str):
        if im not in FIDELITY:
            raise ValueError(f"unknown mechanism {im!r}; expected one of {', '.join(FIDELITY)}")
        self.metrics = [METRICS[name](VALUE_RANGE[im]) for name in FIDELITY[im]]

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> "Fidelity":
        for metric in self.metrics:
            metric.update(pred, target)
        return self

    def result(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for metric in self.metrics:
            merged.update(metric.result())
        return merged


def fidelity(im: str, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The metrics of one batch of predictions (any size: chunked inside)."""
    return Fidelity(im).update(pred, target).result()
