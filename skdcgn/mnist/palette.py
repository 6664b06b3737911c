"""The palettes of the CGN protocol's MNIST variants (RGB 0-255)."""

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

# Colored MNIST (Kim et al. 2019, the CGN's source for it) paints each class's digit in its own colour, jittered
# per image, on black. Its palette ships only inside that dataset's files, so these are the colored teacher's
# mean digit colours per class, measured on 5,000 samples (pixels with mask > 0.5) with our CGNMnistTeacher.
COLORED_DIGIT_RGB = (
    (197, 24, 83),
    (7, 134, 120),
    (227, 220, 32),
    (12, 93, 196),
    (226, 145, 44),
    (140, 52, 179),
    (64, 226, 185),
    (239, 212, 206),
    (203, 229, 60),
    (172, 46, 11),
)


def as_unit_range(rgb: tuple) -> torch.Tensor:
    """(N, 3) colours mapped from 0..255 to the images' [-1, 1]."""
    return torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1.0
