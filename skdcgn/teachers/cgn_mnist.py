"""The pretrained CGN-MNIST teachers (Sauer & Geiger, ICLR 2021) as deterministic black boxes.

The published checkpoints are state dicts of one small network with three heads. Its original forward pass is
not usable for distillation: it samples its own noise and rolls each texture by a random cyclic shift from the
global RNG, so the same inputs give different images. We call each head directly with the mechanism's own
(u, y) instead, in eval mode, and leave the shift to composition (`counterfactuals.inputs.cyclic_shift`), where
it is applied alike to teacher and student textures.

Layout facts (docs/teachers.md): every head reads cat([u (32), label_emb[y] (10)]); the
shape head has three parameter-free InstanceNorms that a strict state-dict load cannot notice when missing, which
is why tests compare its outputs with recorded statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from skdcgn.settings.teacher import CGNMnistSettings
from skdcgn.teachers.base import Teacher
from skdcgn.teachers.state_dict import CheckpointError, check_layout, read_state_dict
from skdcgn.utils.hashing import file_sha256

Z_DIM = 32
EMBEDDING_DIM = 10
NUM_CLASSES = 10
IMAGE_SIZE = 32
# The three published checkpoints, so that a file given for the wrong variant is caught by its bytes.
KNOWN_SHA256 = {
    "6b178e7c1924b9efc532c467e7f0b77d2702efb536de9816bbd7e92c26d9b3fe": "colored",
    "7aa06c907f099c63a26127164a38d2ab353f1cdcafabdf8ca9303a0e9197b933": "double_colored",
    "db5bc3108f7bfbd74a85e2b267e65e95bd918920a02fd8de64c947fd8a0015f0": "wildlife",
}
HEADS = {"shape": "f_shape", "texture": "f_text1", "background": "f_text2"}
DOWNLOAD_HINT = "get <variant>_mnist.pth from the CGN authors' repository (see teachers/README.md)"
# Mask range of the original code: a clamp, not a sigmoid, after the last InstanceNorm.
MASK_CLAMP = (1e-4, 0.9999)


def _stem() -> list[nn.Module]:
    """cat([u, embedding]) -> (B, 64, 8, 8)."""
    return [nn.Linear(Z_DIM + EMBEDDING_DIM, 64 * 8 * 8), nn.Unflatten(1, (64, 8, 8))]


def _up(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Nearest x2, bias-free 3x3 conv, BatchNorm, LeakyReLU 0.2: the step both kinds of head repeat."""
    return [nn.Upsample(scale_factor=2), nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2)]


def _shape_head() -> nn.Sequential:
    """Indices match the checkpoint's keys (f_shape.0, .4, .5, .9, .10); the norms at 2, 7, 12 have no keys."""
    return nn.Sequential(*_stem(), nn.InstanceNorm2d(64), *_up(64, 32), nn.InstanceNorm2d(32), *_up(32, 1),
                         nn.InstanceNorm2d(1))


def _texture_head() -> nn.Sequential:
    """Indices match f_text1/f_text2 keys (.0, .3, .4, .7, .8, .10, .11)."""
    return nn.Sequential(*_stem(), *_up(64, 64), *_up(64, 32), nn.Conv2d(32, 3, 3, padding=1), nn.BatchNorm2d(3),
                         nn.Tanh())


class CGNMnistNet(nn.Module):
    """The checkpoint's modules under the checkpoint's names; no forward of its own (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.label_emb = nn.Embedding(NUM_CLASSES, EMBEDDING_DIM)
        self.f_shape = _shape_head()
        self.f_text1 = _texture_head()
        self.f_text2 = _texture_head()

    def head(self, im: str, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = getattr(self, HEADS[im])(torch.cat([u, self.label_emb(y)], dim=1))
        return out.clamp(*MASK_CLAMP) if im == "shape" else out


class CGNMnistTeacher(Teacher):
    """One of the three published CGN-MNIST networks; each mechanism is one head, a function of its (u, y)."""

    kind = "cgn-mnist"
    draws_digits = True

    def __init__(self, settings: CGNMnistSettings = CGNMnistSettings()) -> None:
        path = Path(settings.checkpoint)
        state = read_state_dict(path, DOWNLOAD_HINT)
        self.sha256 = file_sha256(path)
        known = KNOWN_SHA256.get(self.sha256)
        if known not in (None, settings.variant):
            raise CheckpointError(f"teacher checkpoint {path} is the published {known} teacher, "
                                  f"but teacher.cgn-mnist.variant is {settings.variant!r}")
        self.network = CGNMnistNet()
        check_layout(state, self.network.state_dict(), path, "CGN-MNIST")
        self.network.load_state_dict(state, strict=True)
        # Eval mode: BatchNorm uses its stored statistics, so every sample is independent of its batch.
        self.network.eval().requires_grad_(False)
        self.variant = self.mirrors = settings.variant
        self.image_size = IMAGE_SIZE
        self.num_classes = NUM_CLASSES
        self.z_dims = {im: Z_DIM for im in HEADS}

    def identity(self) -> dict:
        return {**super().identity(), "variant": self.variant, "sha256": self.sha256}

    def num_parameters(self, im: str) -> int:
        """The head's own weights; the 100-value label embedding is shared by all three and not counted."""
        return sum(p.numel() for p in getattr(self.network, HEADS[im]).parameters())

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.network.head(im, z, y)
