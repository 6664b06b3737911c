"""Image grids as PNG: rows of same-sized image batches (e.g. teacher over student), laid out in uint8.

Built here rather than with torchvision's make_grid: importing torchvision costs every stage that draws a grid
~2 s, more than the drawing, and the layout is a few lines.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from skdcgn.shards.format import encode_images

WHITE = 255


def save_grid(path: Path, rows: list[torch.Tensor], value_range: tuple[float, float], scale: int = 2,
              gap: int = 2) -> None:
    """Each row a batch (N, C, H, W) in value_range; 1-channel rows are shown grey next to colour rows, short
    rows end in white. Pixels are quantised as the shards quantise them, so a grid shows what is stored."""
    columns = max(len(row) for row in rows)
    height, width = rows[0].shape[2:]
    canvas = torch.full((len(rows) * (height + gap) + gap, columns * (width + gap) + gap, 3), WHITE,
                        dtype=torch.uint8)
    for r, row in enumerate(rows):
        pixels = torch.from_numpy(encode_images(row, value_range))  # (N, H, W, C) uint8
        for c, image in enumerate(pixels):
            top, left = gap + r * (height + gap), gap + c * (width + gap)
            canvas[top:top + height, left:left + width] = image  # a grey (C = 1) image fills all three channels
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    scaled = canvas.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    Image.fromarray(scaled.numpy()).save(path, format="PNG")
