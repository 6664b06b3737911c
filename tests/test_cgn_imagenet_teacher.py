"""The ImageNet CGN teacher on checkpoints the tests make in the released file's layout.

No ImageNet weights exist on these machines. The layout tests use the full-size networks on the meta device
(shapes without data: a 3,206-key checkpoint of a few hundred kB); the forward tests use random weights in a
tiny BigGAN-deep configuration that still renders 256x256, so U2-Net runs at its real input size.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from skdcgn.settings.schema import SettingsError
from skdcgn.settings.teacher import CGNImageNetSettings, TeacherSettings
from imagenet_checkpoints import released_layout, tiny_biggan, write_tiny_checkpoint
from skdcgn.teachers.cgn_imagenet import (BIGGAN_DEEP_256, CGNImageNetNet, CGNImageNetTeacher, biggan_config,
                                          load_network)
from skdcgn.teachers.noise import TRUNCATION_BOUND, draw_noise
from skdcgn.teachers.registry import make_teacher
from skdcgn.teachers.state_dict import CheckpointError
from skdcgn.teachers.u2net import U2Net

BIGGAN_PARAMETERS = 55_880_833  # each of the three BigGAN-deep-256 (spec)
U2NET_PARAMETERS = 44_009_869


@pytest.fixture(scope="module")
def meta_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return CGNImageNetNet().state_dict()


@pytest.fixture(scope="module")
def full_size_checkpoint(meta_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("cgn") / "cgn.pth"
    torch.save(released_layout(meta_state), path)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "cgn.pth", doublings=6)


def tiny_teacher(path, **settings) -> CGNImageNetTeacher:
    return CGNImageNetTeacher(CGNImageNetSettings(checkpoint=str(path), **settings))


@pytest.fixture(scope="module")
def teacher(tiny_checkpoint) -> CGNImageNetTeacher:
    return tiny_teacher(tiny_checkpoint)


def inputs(n: int = 2, seed: int = 0, truncation: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return draw_noise(n, 128, generator, truncation), torch.arange(n) % 10


def test_u2net_has_the_checkpoints_keys_and_shapes():
    network = U2Net()
    state = network.state_dict()
    assert len(state) == 798
    assert sum(p.numel() for p in network.parameters()) == U2NET_PARAMETERS
    assert state["stage4d.rebnconvin.conv_s1.weight"].shape == (256, 1024, 3, 3)
    assert state["stage1d.rebnconv1.conv_s1.weight"].shape == (16, 64, 3, 3)  # the last decoder's narrow middle
    assert state["stage5.rebnconv4.conv_s1.weight"].shape == (256, 256, 3, 3)
    assert network.stage5.rebnconv4.conv_s1.dilation == (8, 8)  # RSU-4F dilates instead of pooling
    assert network.stage1.rebnconv7.conv_s1.dilation == (2, 2)  # RSU-7 dilates only its innermost level
    assert state["outconv.weight"].shape == (1, 6, 1, 1)


# sigmoid(d0) of the CGN's own U2NET (imagenet/models/u2net.py, run once outside this repository) on
# `named_weights` and `odd_image`, at [0, 0, ::12, ::15]. CGN's upsampling (align_corners=True) matters: the
# upstream default moves these by up to 0.025.
CGN_U2NET_MASK = [0.634092, 0.70725, 0.685367, 0.598913, 0.784069, 0.621788, 0.585759, 0.698807, 0.64598,
                  0.388429, 0.407081, 0.403878]


def named_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights drawn from each key's place in the sorted keys alone, so that any network with these keys gets
    the same ones: BatchNorm near identity, convolutions scaled by their fan-in."""
    weights = {}
    for index, (key, value) in enumerate(sorted(state.items())):
        if not value.is_floating_point():
            weights[key] = value
            continue
        draw = torch.rand(value.shape, generator=torch.Generator().manual_seed(index), dtype=torch.float64)
        if key.endswith("running_var"):
            drawn = 0.5 + draw
        elif value.dim() > 1:
            drawn = (2 * draw - 1) * (3 / value[0].numel()) ** 0.5
        else:
            drawn = 0.2 * (draw - 0.5) + (1.0 if key.endswith("bn_s1.weight") else 0.0)
        weights[key] = drawn.float()
    return weights


def odd_image() -> torch.Tensor:
    """A premask in tanh range at an odd size: every level pools with ceil_mode and upsamples to a ragged size."""
    noise = torch.randn(1, 3, 37, 45, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.tanh(noise).float()


def test_u2net_gives_the_cgns_mask_for_the_same_weights():
    network = U2Net().eval()
    network.load_state_dict(named_weights(network.state_dict()))
    with torch.no_grad():
        mask = torch.sigmoid(network(odd_image()))
    torch.testing.assert_close(mask[0, 0, ::12, ::15].flatten(), torch.tensor(CGN_U2NET_MASK), atol=2e-6, rtol=0)


def test_the_released_layout_has_the_specs_key_counts(meta_state):
    keys = [key.removeprefix("module.") for key in released_layout(meta_state)]
    counts = {prefix: sum(key.startswith(f"{prefix}.") for key in keys)
              for prefix in ("biggan_GT", "f_shape", "f_text", "f_bg", "u2net")}
    assert counts == {"biggan_GT": 602, "f_shape": 602, "f_text": 602, "f_bg": 602, "u2net": 798}
    assert len(keys) == 3206
    for suffix in ("weight_orig", "weight_u", "weight_v"):  # the old torch.nn.utils.spectral_norm form
        assert sum(key.startswith("f_text.") and key.endswith(suffix) for key in keys) == 150


def test_u2net_keeps_odd_sizes():
    with torch.no_grad():
        out = U2Net().eval()(torch.randn(1, 3, 50, 50))
    assert out.shape == (1, 1, 50, 50) and torch.isfinite(out).all()


def test_full_size_checkpoint_in_the_released_layout_loads(full_size_checkpoint):
    network, config = load_network(full_size_checkpoint)
    assert config == BIGGAN_DEEP_256  # read back from the tensors' shapes
    for name in ("f_shape", "f_text", "f_bg"):
        assert sum(p.numel() for p in getattr(network, name).parameters()) == BIGGAN_PARAMETERS
    assert sum(p.numel() for p in network.u2net.parameters()) == U2NET_PARAMETERS
    assert not hasattr(network, "biggan_GT") and not network.training


def test_registry_builds_the_teacher_from_params(full_size_checkpoint):
    settings = TeacherSettings.parse({"kind": "cgn-imagenet",
                                      "cgn-imagenet": {"checkpoint": str(full_size_checkpoint)}}, "teacher")
    teacher = make_teacher(settings)
    assert isinstance(teacher, CGNImageNetTeacher)
    assert (teacher.num_classes, teacher.image_size, teacher.truncation) == (1000, 256, 0.5)
    assert teacher.z_dims == {"shape": 128, "texture": 128, "background": 128}
    assert teacher.num_parameters("shape") == BIGGAN_PARAMETERS + U2NET_PARAMETERS
    assert teacher.num_parameters("texture") == BIGGAN_PARAMETERS


def test_a_wrong_checkpoint_is_refused_in_one_line_naming_every_problem(meta_state, tmp_path):
    state = dict(meta_state)
    del state["f_text.generator.conv_to_rgb.bias"]
    state["f_bg.extra.weight"] = torch.zeros(1)
    state["u2net.outconv.weight"] = torch.zeros(1, 5, 1, 1)
    path = tmp_path / "cgn.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_network(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "missing keys: f_text.generator.conv_to_rgb.bias" in message
    assert "unexpected keys: f_bg.extra.weight" in message
    assert "u2net.outconv.weight (1, 5, 1, 1) != (1, 6, 1, 1)" in message


def test_a_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(CheckpointError, match="not found; get cgn.pth from the CGN authors' repository"):
        load_network(tmp_path / "cgn.pth")


def test_without_the_extra_the_teacher_says_what_to_install(full_size_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_pretrained_biggan", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[imagenet\]'"):
        load_network(full_size_checkpoint)


@pytest.mark.parametrize("section, allowed", [({"truncation": 0.0}, "> 0"), ({"truncation": 1.5}, "<= 1"),
                                              ({"image_size": 100}, "128")])
def test_bad_settings_are_refused_in_one_line(section, allowed):
    with pytest.raises(SettingsError) as error:
        TeacherSettings.parse({"kind": "cgn-imagenet", "cgn-imagenet": section}, "teacher")
    assert "\n" not in str(error.value) and f"teacher.cgn-imagenet.{next(iter(section))}" in str(error.value)
    assert allowed in str(error.value)


def test_the_mechanisms_render_masks_and_images_at_256(teacher):
    z, y = inputs()
    mask = teacher("shape", z, y)
    assert mask.shape == (2, 1, 256, 256) and torch.isfinite(mask).all()
    assert 1e-4 <= mask.min() and mask.max() <= 0.9999
    for im in ("texture", "background"):
        image = teacher(im, z, y)
        assert image.shape == (2, 3, 256, 256) and torch.isfinite(image).all()
        assert image.abs().max() <= 1.0 and image.std() > 0.01


def test_samples_are_deterministic_and_independent_of_their_batch(teacher):
    z, y = inputs(3)
    batch = teacher("texture", z, y)
    assert torch.equal(batch, teacher("texture", z, y))
    torch.testing.assert_close(teacher("texture", z[1:2], y[1:2]), batch[1:2], atol=1e-5, rtol=0)


def test_the_teacher_stays_in_eval_mode(teacher):
    """Train mode would move spectral norm's vectors on every forward: the teacher would drift as it samples."""
    before = teacher.network.f_text.generator.gen_z.weight_u.clone()
    teacher.network.train()
    z, y = inputs()
    first = teacher("texture", z, y)
    assert not any(module.training for module in teacher.network.modules())
    assert torch.equal(teacher.network.f_text.generator.gen_z.weight_u, before)
    assert torch.equal(teacher("texture", z, y), first)


def test_module_prefix_and_biggan_gt_change_nothing(teacher, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(teacher.network.state_dict(), path)
    z, y = inputs()
    assert torch.equal(tiny_teacher(path)("background", z, y), teacher("background", z, y))


def test_truncation_selects_other_images_for_the_same_noise(tiny_checkpoint, teacher):
    z, y = inputs()
    other = tiny_teacher(tiny_checkpoint, truncation=0.8)
    assert (other("texture", z, y) - teacher("texture", z, y)).abs().max() > 1e-3
    assert other.identity()["truncation"] == 0.8 and teacher.identity()["truncation"] == 0.5
    assert other.identity()["sha256"] == teacher.identity()["sha256"]


@pytest.mark.parametrize("doublings", [4, 6])
def test_a_smaller_cgns_configuration_is_read_from_its_checkpoint(doublings, tmp_path):
    config = tiny_biggan(doublings)
    with torch.device("meta"):
        state = CGNImageNetNet(config).state_dict()
    assert biggan_config(state) == config


def test_an_image_size_the_checkpoint_cannot_give_is_refused_in_one_line(tiny_checkpoint):
    with pytest.raises(ValueError) as error:
        tiny_teacher(tiny_checkpoint, image_size=512)
    assert str(error.value) == (f"teacher.cgn-imagenet.image_size 512: checkpoint {tiny_checkpoint} renders "
                                f"256x256; allowed: 256, 128, 64, 32")


def test_image_size_128_averages_the_256_images(tiny_checkpoint, teacher):
    z, y = inputs()
    small = tiny_teacher(tiny_checkpoint, image_size=128)
    torch.testing.assert_close(small("texture", z, y), F.avg_pool2d(teacher("texture", z, y), 2))
    assert small.identity()["image_size"] == 128


def test_the_teacher_runs_on_its_device(tiny_checkpoint, teacher, device):
    moved = tiny_teacher(tiny_checkpoint).to(device)
    z, y = inputs()
    for im in ("shape", "texture"):
        image = moved(im, z, y)
        assert image.device.type == device.type
        torch.testing.assert_close(image.cpu(), teacher(im, z, y), atol=2e-3, rtol=0)


def test_teacher_samples_keep_their_truncated_noise(teacher, tmp_path):
    from skdcgn.settings.generate import GenerateSettings
    from skdcgn.shards.format import decode_images
    from skdcgn.shards.reading import open_dataset
    from skdcgn.teachers.sampling import sample_teacher

    settings = GenerateSettings(per_class=2, batch_size=8, shard_size=10)
    sample_teacher(teacher, "texture", tmp_path / "texture", 2, torch.Generator().manual_seed(0), settings)
    samples = open_dataset(tmp_path / "texture").load()
    assert samples["image"].shape == (20, 3, 256, 256)
    assert samples["z"].abs().max() <= TRUNCATION_BOUND * teacher.truncation
    expected = teacher("texture", samples["z"][:4], samples["label"][:4])
    assert (decode_images(samples["image"][:4], (-1.0, 1.0)) - expected).abs().max() <= 1 / 255 + 1e-5
