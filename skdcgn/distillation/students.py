"""TinyGAN-style student generator and spectral-norm projection discriminator.

The student replaces one teacher mechanism, so it takes exactly the teacher's inputs (that mechanism's noise z
and the class y) and returns an image in the same value range. It is meant to be much smaller than the teacher:
depthwise-separable convolutions and class-conditional BatchNorm carry the class at every resolution cheaply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from skdcgn.mechanisms import CHANNELS, VALUE_RANGE

# Zero padding made every generator conv darken the image border: held-out error at the two outer rows was 3x
# that of the interior. Reflect padding continues the image instead.
PADDING = "reflect"


class ConditionalBatchNorm(nn.Module):
    """BatchNorm whose gain and bias come from the class: the class steers every block, not only the input.

    With `embedding_dim` 0 each class has its own gain and bias (a table: cheap for 10 classes); otherwise they
    are linear in the generator's shared class embedding, as in BigGAN, so that 1,000 classes do not cost
    2 x 1,000 x channels weights in every block.
    """

    def __init__(self, channels: int, num_classes: int, embedding_dim: int = 0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        if embedding_dim:
            self.gain, self.bias = nn.Linear(embedding_dim, channels), nn.Linear(embedding_dim, channels)
            nn.init.zeros_(self.gain.weight)
            nn.init.ones_(self.gain.bias)
            nn.init.zeros_(self.bias.weight)
            nn.init.zeros_(self.bias.bias)
        else:
            self.gain, self.bias = nn.Embedding(num_classes, channels), nn.Embedding(num_classes, channels)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """`condition`: the classes (B,) int64 for a table, the class embeddings (B, embedding_dim) otherwise."""
        return self.norm(x) * self.gain(condition)[:, :, None, None] + self.bias(condition)[:, :, None, None]


def separable_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1: about 9/out_channels of a full 3x3 convolution's weights."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False, padding_mode=PADDING),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class UpBlock(nn.Module):
    """Residual block that doubles the resolution: CBN, ReLU, 1x1 conv, bilinear x2, depthwise 3x3, CBN, ReLU,
    separable conv; the shortcut is a 1x1 conv, then bilinear x2.

    Channels change BEFORE upsampling: a 1x1 conv commutes with bilinear upsampling (exactly, for the shortcut),
    and at a quarter of the pixels it costs a quarter. On one CPU thread this made a step ~2x faster.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int, embedding_dim: int = 0):
        super().__init__()
        self.norm1 = ConditionalBatchNorm(in_channels, num_classes, embedding_dim)
        self.reduce = nn.Conv2d(in_channels, out_channels, 1)
        self.spatial = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False,
                                 padding_mode=PADDING)
        self.norm2 = ConditionalBatchNorm(out_channels, num_classes, embedding_dim)
        self.conv2 = separable_conv(out_channels, out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        h = self.spatial(_upsample(self.reduce(F.relu(self.norm1(x, condition)))))
        h = self.conv2(F.relu(self.norm2(h, condition)))
        return h + _upsample(self.shortcut(x))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class StudentGenerator(nn.Module):
    """(z, y) -> image of one mechanism; `widths[0]` channels at the base resolution, one up-block per later width.

    The class enters as a one-hot next to z (`class_embedding` 0: the stem learns the embedding, and every
    norm has a per-class table), or as a learned embedding of `class_embedding` dimensions shared by the stem
    and the norms: a one-hot of 1,000 classes into the stem would cost 1,000 x its output size in weights.
    """

    def __init__(self, im: str, z_dim: int, num_classes: int, image_size: int, widths: list[int],
                 class_embedding: int = 0):
        super().__init__()
        self.config = {"im": im, "z_dim": z_dim, "num_classes": num_classes, "image_size": image_size,
                       "widths": list(widths), "class_embedding": class_embedding}
        self.base = image_size // 2 ** (len(widths) - 1)
        if len(widths) < 2 or self.base * 2 ** (len(widths) - 1) != image_size or self.base < 1:
            raise ValueError(f"student widths {widths}: need >= 2 widths and image_size {image_size} divisible "
                             f"by 2**(len(widths) - 1)")
        self.num_classes = num_classes
        self.value_range = VALUE_RANGE[im]
        self.embedding = nn.Embedding(num_classes, class_embedding) if class_embedding else None
        self.stem = nn.Linear(z_dim + (class_embedding or num_classes), widths[0] * self.base**2)
        self.blocks = nn.ModuleList(UpBlock(a, b, num_classes, class_embedding) for a, b in zip(widths, widths[1:]))
        self.head = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(),
                                  nn.Conv2d(widths[-1], CHANNELS[im], 3, padding=1, padding_mode=PADDING))
        # A per-class output offset, started at each class's mean teacher colour (`init_class_offset`): CGN
        # textures are mostly one colour per class, and Adam, moving each weight ~lr per step, needed thousands
        # of steps to walk there. Starting there leaves the network to model only what the noise changes.
        self.class_offset = nn.Embedding(num_classes, CHANNELS[im])
        nn.init.zeros_(self.class_offset.weight)
        # channels_last: oneDNN's convolutions at few channels ran ~1.6x faster in it on one CPU thread. Whether
        # cuDNN's depthwise kernels are fast in it is open (benchmarks.student_forward measures both layouts).
        self.layout = torch.channels_last

    @torch.no_grad()
    def init_class_offset(self, class_means: torch.Tensor) -> None:
        """Start the output at each class's mean colour: class_means (num_classes, channels) in value_range."""
        lo, hi = self.value_range
        self.class_offset.weight.copy_(torch.logit(((class_means - lo) / (hi - lo)).clamp(1e-3, 1 - 1e-3)))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            condition, code = y, F.one_hot(y, self.num_classes).to(z.dtype)
        else:
            condition = code = self.embedding(y)
        inputs = torch.cat([z, code], dim=1)
        # The layout is set here, where the first image-shaped tensor appears: every later layer keeps it, and
        # every caller (training, compose, CLI) gets it.
        h = self.stem(inputs).view(len(z), -1, self.base, self.base).contiguous(memory_format=self.layout)
        for block in self.blocks:
            h = block(h, condition)
        lo, hi = self.value_range
        # A sigmoid scaled to the mechanism's range ([0, 1] masks, [-1, 1] textures), so outputs never leave it.
        return lo + (hi - lo) * torch.sigmoid(self.head(h) + self.class_offset(y)[:, :, None, None])


class ProjectionDiscriminator(nn.Module):
    """Strided spectral-norm convs, sum-pool, and a class projection head (Miyato & Koyama).

    Returns the logit and the feature map after every conv stage: the feature-distillation and KL terms
    compare teacher and student images in this learned feature space.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: list[int]):
        super().__init__()
        channels = [in_channels] + list(widths)
        self.stages = nn.ModuleList(
            nn.Sequential(spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.01))
            for a, b in zip(channels, channels[1:])
        )
        self.linear = spectral_norm(nn.Linear(widths[-1], 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, widths[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        pooled = x.sum(dim=(2, 3))
        logit = self.linear(pooled).squeeze(1) + (self.embed(y) * pooled).sum(dim=1)
        return logit, features


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
