"""The double-coloured MNIST palettes of the CGN protocol (RGB 0-255)."""

import torch

BACKGROUND_RGB = (
    (0, 100, 0),  # darkgreen
    (0, 0, 139),  # darkblue
    (176, 48, 96),  # maroon
    (255, 69, 0),  # orangered
    (255, 255, 0),  # yellow
    (222, 184, 135),  # burlywood
    (0, 255, 0),  # lime
    (0, 255, 255),  # aqua
    (255, 0, 255),  # fuchsia
    (100, 149, 237),  # cornflowerblue
)
# The foreground of class i takes background colour (i - 6) mod 10: class 0 is yellow, 6 darkgreen.
FOREGROUND_RGB = tuple(BACKGROUND_RGB[(i - 6) % 10] for i in range(10))


def as_unit_range(rgb: tuple) -> torch.Tensor:
    """(N, 3) colours mapped from 0..255 to the images' [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1.0
