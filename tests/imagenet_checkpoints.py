"""Random CGN-ImageNet checkpoints in the released file's layout, for the teacher's tests and the pipeline's.

No ImageNet weights exist on these machines: these make files a user's `cgn.pth` is laid out like, at full size
(on the meta device: shapes without data) or tiny (random weights that render finite images).
"""

from __future__ import annotations

from pathlib import Path

import torch

from skdcgn.teachers.cgn_imagenet import BIGGAN_DEEP_256, CGNImageNetNet


def tiny_biggan(doublings: int) -> dict:
    """A BigGAN-deep of channel width 4 that renders 4 * 2^doublings pixels, a fraction of a second per image:
    BigGAN-deep's pairs of blocks, the second of each pair upsampling. The first block takes 16 x width (BigGAN's
    first linear layer), the last gives 1 x width; the attention layer needs width x multiplier >= 8."""
    levels = [16, 8, 4, 2, 2, 1, 1, 1][:doublings]
    layers = []
    for level, after in zip(levels, levels[1:] + [1]):
        layers += [(False, level, level), (True, level, after)]
    return {**BIGGAN_DEEP_256, "output_dim": 4 * 2**doublings, "channel_width": 4, "num_classes": 10,
            "class_embed_dim": BIGGAN_DEEP_256["z_dim"], "attention_layer_position": 2, "layers": layers}


def released_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As the CGN's own training saves it: DataParallel's prefix, and biggan_GT beside the three BigGANs."""
    gt = {f"biggan_GT.{key.removeprefix('f_shape.')}": value for key, value in state.items()
          if key.startswith("f_shape.")}
    return {f"module.{key}": value for key, value in {**state, **gt}.items()}


def random_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights that render finite images: the traps of random BigGAN weights (docs/teachers.md)."""
    torch.manual_seed(seed)
    network = CGNImageNetNet(config)
    for biggan in (network.f_shape, network.f_text, network.f_bg):
        biggan.generator.bn.weight.data.fill_(1.0)  # created uninitialised by the package
        biggan.generator.bn.bias.data.zero_()
        for name, buffer in biggan.named_buffers():
            if name.endswith("running_means"):  # per-truncation statistics that differ, so truncation matters
                buffer.normal_(0.0, 0.1)
        # Random spectral-norm vectors make sigma tiny and the output NaN: a few power iterations fix them.
        torch.nn.Module.train(biggan, True)
        with torch.no_grad():
            for _ in range(5):
                biggan(torch.zeros(1, config["z_dim"]), torch.eye(config["num_classes"])[:1], 0.5)
    return network.state_dict()


def write_tiny_checkpoint(path: Path, doublings: int, seed: int = 0) -> Path:
    """A tiny CGN rendering 4 * 2^doublings pixels (with the full-size U2-Net), saved as the CGN saves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(released_layout(random_state(tiny_biggan(doublings), seed)), path)
    return path
