"""The CGN-MNIST datasets (colored, double_colored, wildlife) that the pretrained teachers mirror, from real digits.

A real digit gives the shape mask; foreground and background are then filled independently, each from its own
class index, so that test images can break the train-time correlation between digit, colour and texture.
Everything is batch-vectorised and draws its randomness from an explicit torch.Generator, so a seed fixes the
whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from skdcgn.counterfactuals.composite import compose
from skdcgn.counterfactuals.masks import gaussian_blur
from skdcgn.mnist.palette import BACKGROUND_RGB, COLORED_DIGIT_RGB, FOREGROUND_RGB
from skdcgn.settings.teacher import MnistVariant

VARIANTS = get_args(MnistVariant)
NUM_CLASSES = 10
IMAGE_SIZE = 32
MASK_THRESHOLD = 0.1
COLOUR_NOISE_STD = 0.01  # double_colored: per channel, in 0..1 colour units, once per image
# colored: the source dataset's colour variance is 0.020; the colored teacher's digit colours spread by 0.06 to
# 0.15 per channel within a class (measured; the clamp to 0..1 narrows a spread of 0.14).
COLORED_NOISE_STD = 0.02**0.5
TEXTURE_SIZE = 150
CROP_PADDING = 3  # reflect padding before the random 32x32 crop, as torchvision's RandomCrop(32, padding=3)


@dataclass(frozen=True)
class Textures:
    """Per-class texture images for wildlife MNIST, each float (10, 3, 150, 150) in [-1, 1]."""

    object: torch.Tensor
    background: torch.Tensor


def digit_masks(digits: torch.Tensor, blur: float = 0.0) -> torch.Tensor:
    """Binary shape masks float (N, 1, 32, 32) from uint8 digits (N, 28, 28), as the CGN protocol builds them;
    with `blur` > 0, convolved with a Gaussian of that sigma in pixels (grey edges, as compose.mask_blur draws)."""
    scaled = digits.float().div(255).unsqueeze(1)
    resized = F.interpolate(scaled, size=(IMAGE_SIZE, IMAGE_SIZE), mode="nearest")
    binary = (resized > MASK_THRESHOLD).float()
    return gaussian_blur(binary, blur) if blur else binary


def same_colour(variant: str, fg_class: torch.Tensor, bg_class: torch.Tensor) -> torch.Tensor | None:
    """The hard test images of double_colored: digit and background get the very same palette colour (the two
    palettes are shifted by six, so that is fg == (bg + 6) mod 10), and only the colour noise and the shape
    tell them apart. None for the other variants: colored has one black background, wildlife distinct textures."""
    if variant != "double_colored":
        return None
    foreground, background = torch.tensor(FOREGROUND_RGB), torch.tensor(BACKGROUND_RGB)
    return (foreground[fg_class] == background[bg_class]).all(dim=1)


def colourise(digits: torch.Tensor, fg_class: torch.Tensor, bg_class: torch.Tensor, variant: str,
              generator: torch.Generator, textures: Textures | None = None, mask_blur: float = 0.0) -> torch.Tensor:
    """Images float (N, 3, 32, 32) in [-1, 1] of one variant; colored ignores bg_class (its background is black).
    `mask_blur`: see digit_masks."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if not digits.shape[0] == fg_class.shape[0] == bg_class.shape[0]:
        raise ValueError(f"{digits.shape[0]} digits but {fg_class.shape[0]} fg and {bg_class.shape[0]} bg classes")
    masks = digit_masks(digits, mask_blur)
    if variant == "colored":
        black = torch.zeros(len(masks), 3)
        return _paint(masks, _noisy_colours(COLORED_DIGIT_RGB, fg_class, generator, COLORED_NOISE_STD), black)
    if variant == "double_colored":
        foreground = _noisy_colours(FOREGROUND_RGB, fg_class, generator, COLOUR_NOISE_STD)
        return _paint(masks, foreground, _noisy_colours(BACKGROUND_RGB, bg_class, generator, COLOUR_NOISE_STD))
    if textures is None:
        raise ValueError("the wildlife variant needs textures (see load_textures)")
    foreground = _random_crops(textures.object, fg_class, generator)
    return compose(masks, foreground, _random_crops(textures.background, bg_class, generator))


def _noisy_colours(palette: tuple, index: torch.Tensor, generator: torch.Generator, std: float) -> torch.Tensor:
    """(N, 3) colours in 0..1 units, jittered once per image: the whole digit (or background) shares one colour."""
    colours = torch.tensor(palette, dtype=torch.float32)[index] / 255
    return colours + std * torch.randn(colours.shape, generator=generator)


def _paint(masks: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Flat-coloured composite mapped from 0..1 to [-1, 1]; the clamp absorbs noise past black or full intensity."""
    image = compose(masks, foreground[:, :, None, None], background[:, :, None, None])
    return (image * 2 - 1).clamp(-1, 1)


def _random_crops(textures: torch.Tensor, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One 32x32 crop per image of its class texture, at a uniform position in the reflect-padded texture."""
    padded = F.pad(textures, (CROP_PADDING,) * 4, mode="reflect")
    n, offsets = classes.shape[0], torch.arange(IMAGE_SIZE)
    top = torch.randint(padded.shape[-2] - IMAGE_SIZE + 1, (n,), generator=generator)
    left = torch.randint(padded.shape[-1] - IMAGE_SIZE + 1, (n,), generator=generator)
    # Advanced indexing gathers all N windows in one pass: (N,1,1,1), (1,3,1,1), (N,1,32,1), (N,1,1,32) -> (N,3,32,32).
    rows = (top[:, None] + offsets)[:, None, :, None]
    cols = (left[:, None] + offsets)[:, None, None, :]
    channels = torch.arange(padded.shape[1])[None, :, None, None]
    return padded[classes[:, None, None, None], channels, rows, cols]


def load_textures(folder: Path) -> Textures:
    """The wildlife textures from `<folder>/object/<c>_*.jpg` and `<folder>/background/<c>_*.jpg`, c = 0..9."""
    folder = Path(folder)
    return Textures(object=_load_kind(folder, "object"), background=_load_kind(folder, "background"))


def _load_kind(folder: Path, kind: str) -> torch.Tensor:
    """(10, 3, 150, 150), stacked in class order so that row c is the texture of class c."""
    return torch.stack([_load_texture(_texture_file(folder, kind, c)) for c in range(NUM_CLASSES)])


def _texture_file(folder: Path, kind: str, label: int) -> Path:
    """The single file of one class; none or several would silently give the teacher the wrong texture."""
    matches = sorted((folder / kind).glob(f"{label}_*.jpg"))
    if len(matches) != 1:
        raise ValueError(f"textures in {folder}: expected exactly one {kind}/{label}_*.jpg "
                         f"(one {kind}/<c>_*.jpg per class c = 0..{NUM_CLASSES - 1}), found {len(matches)}")
    return matches[0]


def _load_texture(path: Path) -> torch.Tensor:
    """RGB float (3, 150, 150) in [-1, 1]; resized in float so no second rounding to uint8 happens.

    Decoded by PIL: torchvision 0.29 deprecates its own image decoders.
    """
    with Image.open(path) as image:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float().unsqueeze(0)
    resized = F.interpolate(pixels, size=(TEXTURE_SIZE, TEXTURE_SIZE), mode="bilinear", antialias=True,
                            align_corners=False)
    # Float rounding in the filter can overshoot 0..255 by a hair.
    return (resized[0] / 127.5 - 1).clamp(-1, 1)
