"""Image grids as PNG: rows of same-sized image batches (e.g. teacher over student), through torchvision."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from skdcgn.shards.format import encode_images


def save_grid(path: Path, rows: list[torch.Tensor], value_range: tuple[float, float], scale: int = 2,
              gap: int = 2) -> None:
    """Each row a batch (N, C, H, W) in value_range; 1-channel rows are shown grey next to colour rows, short
    rows end in white. Pixels are quantised as the shards quantise them, so a grid shows what is stored."""
    rows = [row.expand(-1, 3, -1, -1) if row.shape[1] == 1 else row for row in rows]
    columns = max(len(row) for row in rows)
    cells = []
    for row in rows:
        pixels = torch.from_numpy(encode_images(row, value_range)).permute(0, 3, 1, 2)
        cells += [pixels, torch.full((columns - len(row), *pixels.shape[1:]), 255, dtype=torch.uint8)]
    # uint8 / 255 comes back exactly through save_image's x * 255 + 0.5, truncated.
    images = torch.cat(cells).float() / 255
    # make_grid returns a lone image unpadded; pad it like any other.
    grid = make_grid(images, nrow=columns, padding=gap, pad_value=1.0) if len(images) > 1 else \
        F.pad(images[0], (gap,) * 4, value=1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2), path, format="PNG")
