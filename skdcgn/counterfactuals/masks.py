"""The SKDCGN paper's shape-mechanism study: masks changed before composition (noise, rotation, transparency),
a denoising option (3x3 median) for masks whose speckle may hurt the classifier, and a blur that gives crisp
masks the grey edges a pixel loss draws (to test whether those edges give counterfactuals away).

Each counterfactual's change is drawn from its own seed stream, apart from the noise and classes, so switching a
change on leaves everything else about the counterfactuals as it was. A change of zero is no change: the
default composites are bit-identical to ones made without this module. What may change and by how much:
settings.MaskChanges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from skdcgn.settings.compose import MaskChanges
from skdcgn.utils.seeds import generator


def draw_mask_changes(n: int, seed: int, changes: MaskChanges) -> dict[str, torch.Tensor]:
    """Per counterfactual: a rotation angle in degrees and a seed for its noise; empty when nothing is random."""
    if not changes.drawn:
        return {}
    rng = generator(seed, "counterfactuals", "mask")
    angles = (torch.rand(n, generator=rng) * 2 - 1) * changes.rotation
    return {"mask_angle": angles, "mask_noise_seed": torch.randint(2**62, (n,), generator=rng)}


def change_masks(masks: torch.Tensor, changes: MaskChanges, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Masks (B, 1, H, W) in [0, 1] with rows of `draws` (from draw_mask_changes) applied: denoise, blur, rotate,
    add noise, make transparent, in that order."""
    if not changes.active:
        return masks
    if changes.denoise:
        masks = median3(masks)
    if changes.blur:
        masks = gaussian_blur(masks, changes.blur)
    if changes.rotation:
        masks = _rotate(masks, draws["mask_angle"])
    if changes.noise_std:
        # One generator per image from its own seed: the noise does not depend on how images are batched.
        noise = torch.stack([torch.randn(masks.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
                             for seed in draws["mask_noise_seed"]])
        masks = (masks + changes.noise_std * noise).clamp(0, 1)
    return masks * (1 - changes.transparency)


def _rotate(masks: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    radians = degrees * (math.pi / 180)
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(masks.shape), align_corners=False)
    # Outside the turned mask is background: zeros padding.
    return F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def median3(masks: torch.Tensor) -> torch.Tensor:
    """3x3 median of each pixel's neighbourhood; the border repeats its edge pixels, so it is not eaten away."""
    padded = F.pad(masks, (1, 1, 1, 1), mode="replicate")
    neighbourhoods = F.unfold(padded, kernel_size=3)  # (B, C*9, H*W)
    batch, channels, height, width = masks.shape
    return neighbourhoods.view(batch, channels, 9, -1).median(dim=2).values.view(batch, channels, height, width)


def gaussian_blur(masks: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each mask convolved with a Gaussian of `sigma` pixels (3 sigma each side), one axis at a time; the border
    repeats its edge pixels, so a mask touching it does not fade there. A weighted mean: values stay in [0, 1]."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=masks.dtype, device=masks.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = masks.shape[1]
    padded = F.pad(masks, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
