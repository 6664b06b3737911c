"""The ImageNet CGN (Sauer & Geiger, ICLR 2021) as a black-box teacher: one BigGAN-deep-256 per mechanism and a
U2-Net that turns the shape BigGAN's output into a mask.

Facts (../shared/specs/cgn-imagenet-teacher.md): the checkpoint `cgn.pth` holds `f_shape`, `f_text`, `f_bg`
(602 keys each), `u2net` (798) and `biggan_GT` (only used to train the CGN: skipped here), possibly under a
`module.` prefix. Each mechanism takes its own (u, y) where the CGN feeds one u to all three, because each
student learns one mechanism. `truncation` is both the scale of the noise (drawn by whoever calls the teacher,
see skdcgn.teachers.noise) and an argument of every BigGAN forward, where it selects BatchNorm statistics.

BigGAN-deep comes from the package `pytorch-pretrained-biggan` (extra `imagenet`), whose module names are the
checkpoint's: it is imported only when this teacher is built.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from skdcgn.settings import CGNImageNetSettings
from skdcgn.teachers.base import Teacher
from skdcgn.teachers.state_dict import check_layout, read_state_dict
from skdcgn.teachers.u2net import U2Net
from skdcgn.utils.hashing import file_sha256

Z_DIM = 128
NUM_CLASSES = 1000
NETWORKS = {"shape": "f_shape", "texture": "f_text", "background": "f_bg"}
UNUSED_PREFIX = "biggan_GT."
MASK_CLAMP = (1e-4, 0.9999)  # the CGN's: keeps the composite's gradients alive at the mask's extremes
DOWNLOAD_HINT = "get cgn.pth from the CGN authors' repository (see teachers/README.md)"
# pytorch_pretrained_biggan's BigGANConfig for the 256x256 model (its convert_tf_to_pytorch.BigGAN256): 12 blocks
# of (upsample?, in, out) channel multipliers of 128, self-attention before block 8.
BIGGAN_DEEP_256 = {
    "output_dim": 256, "z_dim": Z_DIM, "class_embed_dim": 128, "channel_width": 128, "num_classes": NUM_CLASSES,
    "layers": [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
               (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51,
}


def biggan(config: dict) -> nn.Module:
    """A BigGAN-deep generator of `config` (keys of pytorch_pretrained_biggan.BigGANConfig)."""
    try:
        from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    except ImportError as error:
        raise ImportError(f"teacher.kind cgn-imagenet needs the package pytorch-pretrained-biggan ({error}); "
                          f"install the project's extra: pip install -e '.[imagenet]'") from None
    return BigGAN(BigGANConfig(**config))


class CGNImageNetNet(nn.Module):
    """The checkpoint's generation networks under the checkpoint's names; always in eval mode."""

    def __init__(self, biggan_config: dict = BIGGAN_DEEP_256) -> None:
        super().__init__()
        self.f_shape, self.f_text, self.f_bg = (biggan(biggan_config) for _ in NETWORKS)
        self.u2net = U2Net()

    def train(self, mode: bool = True) -> "CGNImageNetNet":
        # Train mode would update spectral norm's power-iteration vectors on every forward, so the teacher
        # would change while it is being sampled; U2-Net's BatchNorm would use batch statistics.
        return super().train(False)


def checkpoint_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generation networks' entries: without a DataParallel `module.` prefix, without `biggan_GT`."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return {key: value for key, value in state.items() if not key.startswith(UNUSED_PREFIX)}


def load_network(path: Path, biggan_config: dict = BIGGAN_DEEP_256) -> CGNImageNetNet:
    """The checkpoint's networks, key- and shape-checked in one line, in eval mode without gradients."""
    state = checkpoint_state(read_state_dict(path, DOWNLOAD_HINT))
    # Built on the meta device: the checkpoint's tensors become the weights (assign), with no random
    # initialisation of 212 M parameters that would be overwritten at once.
    with torch.device("meta"):
        network = CGNImageNetNet(biggan_config)
    check_layout(state, network.state_dict(), path, "ImageNet CGN")
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval().requires_grad_(False)


class CGNImageNetTeacher(Teacher):
    """The released ImageNet CGN: 1,000 classes, 256x256 (or averaged down to 128x128 for cheaper students)."""

    kind = "cgn-imagenet"

    def __init__(self, settings: CGNImageNetSettings = CGNImageNetSettings(),
                 biggan_config: dict = BIGGAN_DEEP_256) -> None:
        path = Path(settings.checkpoint)
        self.network = load_network(path, biggan_config)
        self.sha256 = file_sha256(path)
        self.truncation = settings.truncation
        self.image_size = settings.image_size
        self.num_classes = biggan_config["num_classes"]
        self.z_dims = {im: biggan_config["z_dim"] for im in NETWORKS}

    def identity(self) -> dict:
        return {**super().identity(), "truncation": self.truncation, "sha256": self.sha256}

    def num_parameters(self, im: str) -> int:
        """The mechanism's BigGAN, and for the shape also the U2-Net that makes its mask."""
        networks = [getattr(self.network, NETWORKS[im])] + ([self.network.u2net] if im == "shape" else [])
        return sum(p.numel() for network in networks for p in network.parameters())

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        classes = F.one_hot(y, self.num_classes).float()
        image = getattr(self.network, NETWORKS[im])(z, classes, self.truncation)
        if im == "shape":
            # The raw tanh output goes into U2-Net, as in the CGN: no normalisation, no resize.
            image = torch.sigmoid(self.network.u2net(image)).clamp(*MASK_CLAMP)
        if image.shape[-1] != self.image_size:
            image = F.interpolate(image, size=self.image_size, mode="area")
        return image
