"""How a sample's image is stored in its record: PNG (lossless) or JPEG (smaller, for large textures)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from skdcgn.settings.schema import ImageFormat, JpegQuality, Settings
from skdcgn.shards.format import IMAGE_MEMBERS

# zlib level 1: lossless either way, and encoding speed is what bounds shard writing, not disk.
PNG_COMPRESS_LEVEL = 1


class ImageCodec(Settings):
    """`png`, or `jpeg` at `quality`; its rules are params.yaml's (`generate.image_format`, `jpeg_quality`)."""

    format: ImageFormat = "png"
    quality: JpegQuality = 90

    @property
    def member(self) -> str:
        return IMAGE_MEMBERS[self.format]

    def encode(self, pixels: np.ndarray) -> bytes:
        """uint8 (H, W, C) -> the member's bytes."""
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        buffer = io.BytesIO()
        if self.format == "png":
            image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        else:
            # No chroma subsampling: at 32x32 a 2x2 colour block is a large part of a stroke.
            image.save(buffer, format="JPEG", quality=self.quality, subsampling=0)
        return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """A member's bytes -> uint8 (H, W, C), whichever format it is in."""
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return pixels[..., None] if pixels.ndim == 2 else pixels
