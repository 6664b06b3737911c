"""Image grids as PNG: rows of same-sized image batches, e.g. teacher over student."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from skdcgn.shards import encode_images


def save_grid(path: Path, rows: list[torch.Tensor], value_range: tuple[float, float], scale: int = 2,
              gap: int = 2) -> None:
    """Each row a batch (N, C, H, W) in value_range; 1-channel rows are shown grey next to colour rows."""
    rows = [row.expand(-1, 3, -1, -1) if row.shape[1] == 1 else row for row in rows]
    _, _, height, width = rows[0].shape
    columns = max(len(row) for row in rows)
    canvas = Image.new("RGB", (columns * (width + gap) + gap, len(rows) * (height + gap) + gap), "white")
    for r, row in enumerate(rows):
        for c, pixels in enumerate(encode_images(row, value_range)):
            canvas.paste(Image.fromarray(pixels), (gap + c * (width + gap), gap + r * (height + gap)))
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
