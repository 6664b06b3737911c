"""What a shard dataset directory holds, and how images become bytes and back.

One tar record carries everything about one sample (key, label, noise vectors, image), so a sample's noise and
image can never be re-paired by index arithmetic downstream. A dataset directory holds:

    shard-000000.tar ...   uncompressed WebDataset tars of records: PNG or JPEG image, <name>.npy arrays, cls
    manifest.parquet       one row per sample: key, label, shard (the arrays live in the records alone)
    shards.parquet         one row per shard: name, n_samples, bytes, sha256
    class_means.npy        teacher samples only: the mean image per class (float32, 0..255 units), summed as the
                           shards were written, so that no reader needs a pass over the data for it
    dataset.json           what a reader needs: members, image channels/size/value range/format, free-form `info`

WebDataset silently drops a truncated tar, so nothing reads a dataset that `validation.validate` has not accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

FORMAT = 2  # 2: z no longer duplicated in the manifest; class means stored
SHARD_PATTERN = "shard-%06d.tar"
ROWS_PATTERN = "shard-%06d.rows.parquet"  # a whole shard's manifest rows, until the writer's `close` joins them
CLASS_MEANS = "class_means.npy"
IMAGE_MEMBERS = {"png": "png", "jpeg": "jpg"}  # image format -> tar member suffix
TAR_BLOCK = 512


class ShardError(Exception):
    """A dataset on disk is missing, truncated or does not match its manifest."""


class HostPixels:
    """A batch's uint8 pixels (B, H, W, C) on their way to the CPU. The rounding to 256 levels runs on the
    images' device, so a GPU hands over a quarter of the bytes of float32; from CUDA the copy goes into pinned
    memory without waiting, so the teacher's next batch runs while the CPU still writes this one."""

    def __init__(self, images: torch.Tensor, value_range: tuple[float, float]):
        lo, hi = value_range
        scaled = (images.detach().float() - lo) * (255.0 / (hi - lo))
        pixels = scaled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        self.ready = None
        if pixels.device.type == "cuda":
            self.host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
            self.host.copy_(pixels, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:
            self.host = pixels.cpu()

    def numpy(self) -> np.ndarray:
        """The pixels, once their copy is complete."""
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.numpy()


def encode_images(images: torch.Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """Float images (B, C, H, W) in value_range -> uint8 (B, H, W, C), rounding to the nearest of 256 levels."""
    return HostPixels(images, value_range).numpy()


def decode_images(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in value_range: the inverse of encode_images up to rounding."""
    lo, hi = value_range
    return images.float() * ((hi - lo) / 255.0) + lo


def read_meta(directory: Path) -> dict:
    path = Path(directory) / "dataset.json"
    if not path.is_file():
        raise ShardError(f"{directory}: not a shard dataset (no dataset.json); run the stage that writes it")
    return json.loads(path.read_text())


def read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise ShardError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
