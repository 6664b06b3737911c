"""The ImageNet CGN (Sauer & Geiger, ICLR 2021) as a black-box teacher: one BigGAN-deep-256 per mechanism and a
U2-Net that turns the shape BigGAN's output into a mask.

Facts (docs/teachers.md): the checkpoint `cgn.pth` holds `f_shape`, `f_text`, `f_bg`
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

from skdcgn.settings.teacher import CGNImageNetSettings
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
# of (upsample?, in, out) channel multipliers of 128, self-attention before block 8. The released checkpoint
# reads back as exactly this (biggan_config); eps is not stored in a checkpoint and is BigGAN-deep's own.
BIGGAN_DEEP_256 = {
    "output_dim": 256, "z_dim": Z_DIM, "class_embed_dim": 128, "channel_width": 128, "num_classes": NUM_CLASSES,
    "layers": [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
               (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51,
}
SMALLEST_IMAGE = 32


def biggan_config(state: dict[str, torch.Tensor], prefix: str = "f_shape.") -> dict:
    """The configuration of the BigGAN-deep stored under `prefix`, read from its tensors' shapes, so a CGN of
    another size or class count (a 128x128 one, the tests' tiny ones) loads like the released 256x256 one.
    Upsampling has no weights: BigGAN-deep pairs its blocks, the second of each pair doubling the resolution."""
    def shape(key: str) -> torch.Size:
        return state[f"{prefix}{key}"].shape

    z_dim, num_classes = shape("embeddings.weight")
    width = shape("generator.gen_z.weight_orig")[0] // (4 * 4 * 16)  # the first block's 16 x width at 4x4
    layers, attention = [], None
    blocks = sorted({int(key.split(".")[3]) for key in state if key.startswith(f"{prefix}generator.layers.")})
    for index in blocks:
        if f"{prefix}generator.layers.{index}.conv_0.weight_orig" in state:
            in_channels = shape(f"generator.layers.{index}.conv_0.weight_orig")[1]
            out_channels = shape(f"generator.layers.{index}.conv_3.weight_orig")[0]
            layers.append((len(layers) % 2 == 1, in_channels // max(width, 1), out_channels // max(width, 1)))
        else:  # the self-attention layer, which BigGAN places before block number `attention_layer_position`
            attention = len(layers)
    return {"output_dim": 4 * 2 ** sum(up for up, _, _ in layers), "z_dim": z_dim, "class_embed_dim": z_dim,
            "channel_width": width, "num_classes": num_classes, "layers": layers,
            "attention_layer_position": len(layers) if attention is None else attention,
            "eps": BIGGAN_DEEP_256["eps"], "n_stats": shape("generator.bn.running_means")[0]}


def stored_config(state: dict[str, torch.Tensor]) -> dict:
    """The checkpoint's BigGAN-deep configuration; where the shape network is not a readable BigGAN-deep, the
    released one, so that the layout check names every key that is wrong."""
    try:
        config = biggan_config(state)
    except KeyError:
        return BIGGAN_DEEP_256
    return config if config["channel_width"] >= 1 and config["layers"] else BIGGAN_DEEP_256


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


def load_network(path: Path) -> tuple[CGNImageNetNet, dict]:
    """The checkpoint's networks, key- and shape-checked in one line, in eval mode without gradients, and their
    BigGAN-deep configuration."""
    state = checkpoint_state(read_state_dict(path, DOWNLOAD_HINT))
    config = stored_config(state)
    # Built on the meta device: the checkpoint's tensors become the weights (assign), with no random
    # initialisation of 212 M parameters that would be overwritten at once.
    with torch.device("meta"):
        network = CGNImageNetNet(config)
    check_layout(state, network.state_dict(), path, "ImageNet CGN")
    network.load_state_dict(state, strict=True, assign=True)
    return network.eval().requires_grad_(False), config


class CGNImageNetTeacher(Teacher):
    """The released ImageNet CGN: 1,000 classes, 256x256 (or averaged down to 128x128 for cheaper students)."""

    kind = "cgn-imagenet"

    def __init__(self, settings: CGNImageNetSettings = CGNImageNetSettings()) -> None:
        path = Path(settings.checkpoint)
        self.network, config = load_network(path)
        native = config["output_dim"]
        allowed = [native >> halvings for halvings in range(8) if native >> halvings >= SMALLEST_IMAGE]
        if settings.image_size not in allowed:
            raise ValueError(f"teacher.cgn-imagenet.image_size {settings.image_size}: checkpoint {path} renders "
                             f"{native}x{native}; allowed: {', '.join(map(str, allowed))}")
        self.sha256 = file_sha256(path)
        self.truncation = settings.truncation
        self.image_size = settings.image_size
        self.num_classes = config["num_classes"]
        self.z_dims = {im: config["z_dim"] for im in NETWORKS}

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
