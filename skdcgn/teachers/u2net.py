"""U^2-Net (Qin et al., 2020): the saliency network with which the ImageNet CGN turns its shape BigGAN's
output into a mask.

Key- and shape-compatible with the `u2net.*` entries of the CGN checkpoint (the full U2NET(3, 1): 798 keys,
44,009,869 parameters), so the module names are the published ones (`stage1.rebnconvin.conv_s1.weight`, ...).
One class builds all of the paper's residual U-blocks: RSU-L is an L-level U-Net inside a block, pooling between
its levels; RSU-4F keeps the resolution and dilates instead. Upsampling is bilinear with align_corners=True, as
in CGN's copy of the network (the upstream repository uses False: same keys, different masks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (levels, in, mid, out, dilated) of the encoder stages 1..6 and the decoder stages 5d..1d.
ENCODER = [(7, 3, 32, 64, False), (6, 64, 32, 128, False), (5, 128, 64, 256, False), (4, 256, 128, 512, False),
           (4, 512, 256, 512, True), (4, 512, 256, 512, True)]
DECODER = [(4, 1024, 256, 512, True), (4, 1024, 128, 256, False), (5, 512, 64, 128, False),
           (6, 256, 32, 64, False), (7, 128, 16, 64, False)]


def upsample_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=target.shape[2:], mode="bilinear", align_corners=True)


def pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode: odd sizes keep their last row and column, as in the published network.
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class ConvBNReLU(nn.Module):
    """3x3 convolution (dilated), BatchNorm, ReLU; attribute names as in the checkpoint (REBNCONV)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


class ResidualUBlock(nn.Module):
    """RSU-L (`dilated=False`) or RSU-4F (`dilated=True`, L = 4): a U-Net of `levels` levels whose output is
    added to its input's projection. Encoder convolutions are `rebnconv1..L`, decoder ones `rebnconv{L-1..1}d`.
    """

    def __init__(self, levels: int, in_channels: int, mid: int, out: int, dilated: bool) -> None:
        super().__init__()
        self.levels, self.dilated = levels, dilated
        self.rebnconvin = ConvBNReLU(in_channels, out)
        for level in range(1, levels + 1):
            # The pooled block dilates only its innermost level; the flat one doubles the dilation per level.
            dilation = 2 ** (level - 1) if dilated else (2 if level == levels else 1)
            self.add_module(f"rebnconv{level}", ConvBNReLU(out if level == 1 else mid, mid, dilation))
        for level in range(levels - 1, 0, -1):
            dilation = 2 ** (level - 1) if dilated else 1
            self.add_module(f"rebnconv{level}d", ConvBNReLU(2 * mid, out if level == 1 else mid, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        entry = self.rebnconvin(x)
        skips, h = [], entry
        for level in range(1, self.levels):
            h = self.get_submodule(f"rebnconv{level}")(h)
            skips.append(h)
            if not self.dilated and level < self.levels - 1:
                h = pool(h)
        h = self.get_submodule(f"rebnconv{self.levels}")(h)
        for level in range(self.levels - 1, 0, -1):
            skip = skips[level - 1]
            if h.shape[2:] != skip.shape[2:]:
                h = upsample_like(h, skip)
            h = self.get_submodule(f"rebnconv{level}d")(torch.cat([h, skip], dim=1))
        return h + entry


class U2Net(nn.Module):
    """U2NET(3, 1): image (B, 3, H, W) -> saliency logits d0 (B, 1, H, W), the fusion of six side outputs."""

    def __init__(self) -> None:
        super().__init__()
        for index, spec in enumerate(ENCODER, start=1):
            self.add_module(f"stage{index}", ResidualUBlock(*spec))
        for index, spec in zip(range(len(DECODER), 0, -1), DECODER):
            self.add_module(f"stage{index}d", ResidualUBlock(*spec))
        # Side outputs read the decoder stages 1..5 and the innermost encoder stage 6.
        side_channels = [spec[3] for spec in reversed(DECODER)] + [ENCODER[-1][3]]
        for index, channels in enumerate(side_channels, start=1):
            self.add_module(f"side{index}", nn.Conv2d(channels, 1, 3, padding=1))
        self.outconv = nn.Conv2d(len(side_channels), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = []
        for index in range(1, len(ENCODER) + 1):
            x = self.get_submodule(f"stage{index}")(pool(x) if encoded else x)
            encoded.append(x)
        decoded = [encoded[-1]]  # stage 6, then 5d, 4d, ..., 1d
        for index in range(len(DECODER), 0, -1):
            skip = encoded[index - 1]
            decoded.append(self.get_submodule(f"stage{index}d")(
                torch.cat([upsample_like(decoded[-1], skip), skip], dim=1)))
        sources = decoded[:0:-1] + [decoded[0]]  # 1d, 2d, ..., 5d, 6
        full = sources[0]
        sides = [self.get_submodule(f"side{index}")(source) for index, source in enumerate(sources, start=1)]
        sides = [side if side.shape[2:] == full.shape[2:] else upsample_like(side, full) for side in sides]
        return self.outconv(torch.cat(sides, dim=1))
