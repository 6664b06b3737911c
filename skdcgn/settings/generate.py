"""`generate`: how many teacher samples each mechanism gets and how they are stored."""

from __future__ import annotations

from typing import Literal

from skdcgn.settings.schema import Count, ImageFormat, JpegQuality, Settings


class ImageFormats(Settings):
    """How each mechanism's images are stored: png (lossless) or jpeg (smaller, lossy: for large textures)."""

    shape: Literal["png"] = "png"  # a lossy mask is a different mask
    texture: ImageFormat = "png"
    background: ImageFormat = "png"


class GenerateSettings(Settings):
    """`generate`: teacher samples per mechanism."""

    per_class: Count = 1000
    heldout_per_class: Count = 50
    shard_size: Count = 5000
    batch_size: Count = 100
    image_format: ImageFormats = ImageFormats()
    jpeg_quality: JpegQuality = 90
