"""The pretrained CGN-MNIST teachers (Sauer & Geiger, ICLR 2021) as deterministic black boxes.

The published checkpoints are state dicts of one small network with three heads. Its original forward pass is
not usable for distillation: it samples its own noise and rolls each texture by a random cyclic shift from the
global RNG, so the same inputs give different images. We call each head directly with the mechanism's own
(u, y) instead, in eval mode, and leave the shift to composition (`skdcgn.compose.cyclic_shift`), where it is
applied alike to teacher and student textures.

Layout facts (../shared/specs/cgn-mnist-teacher.md): every head reads cat([u (32), label_emb[y] (10)]); the
shape head has three parameter-free InstanceNorms that a strict state-dict load cannot notice when missing, which
is why tests compare its outputs with recorded statistics.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from skdcgn.hashing import file_sha256
from skdcgn.teachers.base import VARIANTS, Teacher

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be this teacher; the message is one line naming the file and what is wrong."""


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


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (a checkpoint is data, never code), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint {path} not found; {DOWNLOAD_HINT}")
    # torch.save writes a zip archive whose directory sits at the end: a truncated or foreign file has none.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"teacher checkpoint {path} is not a PyTorch checkpoint (no zip archive: truncated "
                              f"or another kind of file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"teacher checkpoint {path} is not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"teacher checkpoint {path} is not a state dict (it holds a {type(state).__name__})")
    others = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if others:
        raise CheckpointError(f"teacher checkpoint {path} is not a state dict of tensors (entries {_some(others)} "
                              f"are not tensors: another kind of checkpoint?)")
    return state


def check_layout(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path) -> None:
    """Strict key and shape check, reported as one line that lists what is missing, unexpected or misshapen."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in sorted(set(state) & set(expected))
                 if state[k].shape != expected[k].shape]
    problems = [f"{label}: {_some(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshapen)) if items]
    if problems:
        raise CheckpointError(f"teacher checkpoint {path} is not a CGN-MNIST network; " + "; ".join(problems))


def _some(items: list[str], shown: int = 6) -> str:
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


class CGNMnistTeacher(Teacher):
    """One of the three published CGN-MNIST networks; each mechanism is one head, a function of its (u, y)."""

    kind = "cgn-mnist"

    def __init__(self, checkpoint: str | Path, variant: str = "double_colored", image_size: int = IMAGE_SIZE) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown CGN-MNIST variant {variant!r}; allowed: {', '.join(VARIANTS)}")
        if image_size != IMAGE_SIZE:
            raise ValueError(f"the CGN-MNIST teachers make {IMAGE_SIZE}x{IMAGE_SIZE} images; got image_size {image_size}")
        path = Path(checkpoint)
        state = read_state_dict(path)
        self.sha256 = file_sha256(path)
        known = KNOWN_SHA256.get(self.sha256)
        if known not in (None, variant):
            raise CheckpointError(f"teacher checkpoint {path} is the published {known} teacher, "
                                  f"but teacher.variant is {variant!r}")
        self.network = CGNMnistNet()
        check_layout(state, self.network.state_dict(), path)
        self.network.load_state_dict(state, strict=True)
        # Eval mode: BatchNorm uses its stored statistics, so every sample is independent of its batch.
        self.network.eval().requires_grad_(False)
        self.variant = variant
        self.image_size = IMAGE_SIZE
        self.num_classes = NUM_CLASSES
        self.z_dims = {im: Z_DIM for im in HEADS}

    def identity(self) -> dict:
        return {**super().identity(), "z_dims": dict(self.z_dims), "sha256": self.sha256}

    def num_parameters(self, im: str) -> int:
        """The head's own weights; the 100-value label embedding is shared by all three and not counted."""
        return sum(p.numel() for p in getattr(self.network, HEADS[im]).parameters())

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"class labels must be in 0..{self.num_classes - 1}, got {y.min()}..{y.max()}")
        return self.network.head(im, z, y)
