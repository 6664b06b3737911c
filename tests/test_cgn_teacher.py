"""The real CGN-MNIST teachers: outputs against recorded statistics, determinism, and refusing wrong files."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

from skdcgn.mechanisms import IMS
from skdcgn.settings.teacher import CGNMnistSettings, TeacherSettings
from skdcgn.teachers.cgn_mnist import CGNMnistTeacher
from skdcgn.teachers.state_dict import CheckpointError
from skdcgn.teachers.registry import make_teacher

# Recorded from the three published checkpoints with `head_statistics` below (seed 0, 1,000 samples, classes
# i % 10). double_colored agrees with the spec's independent figures: mask mean 0.165, 79.7 % of pixels below
# 0.01, 13.4 % above 0.99, composite mean -0.030.
REFERENCE = {
    "colored": {"mask_mean": 0.1204, "mask_below": 0.8408, "mask_above": 0.0950, "composite_mean": -0.8720,
                "texture_mean": 0.0402, "background_mean": -0.9984},
    "double_colored": {"mask_mean": 0.1653, "mask_below": 0.7966, "mask_above": 0.1342, "composite_mean": -0.0293,
                       "texture_mean": -0.0407, "background_mean": -0.0278},
    "wildlife": {"mask_mean": 0.1673, "mask_below": 0.8038, "mask_above": 0.1459, "composite_mean": -0.2277,
                 "texture_mean": -0.0833, "background_mean": -0.2363},
}
TOLERANCE = 2e-3  # the recorded figures are rounded to 1e-4; BLAS differences are far smaller
INSTANCE_NORMS = (2, 7, 12)  # positions in f_shape of the parameter-free norms a strict load cannot see


def checkpoint(real_data, variant: str):
    return real_data.cgn_mnist / f"{variant}_mnist.pth"


def cgn(path, variant: str) -> CGNMnistTeacher:
    return CGNMnistTeacher(CGNMnistSettings(checkpoint=str(path), variant=variant))


@pytest.fixture(scope="module")
def teachers(real_data) -> dict[str, CGNMnistTeacher]:
    return {v: cgn(checkpoint(real_data, v), v) for v in REFERENCE}


def head_statistics(teacher) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(1000) % 10
    z = {im: torch.randn(1000, 32, generator=generator) for im in IMS}
    mask, fg, bg = (teacher(im, z[im], y) for im in IMS)
    return {"mask_mean": mask.mean().item(), "mask_below": (mask < 0.01).float().mean().item(),
            "mask_above": (mask > 0.99).float().mean().item(),
            "composite_mean": (mask * fg + (1 - mask) * bg).mean().item(),
            "texture_mean": fg.mean().item(), "background_mean": bg.mean().item()}


def off_reference(stats: dict, variant: str) -> dict:
    return {k: round(v, 4) for k, v in stats.items() if abs(v - REFERENCE[variant][k]) > TOLERANCE}


@pytest.mark.parametrize("variant", sorted(REFERENCE))
def test_heads_match_recorded_statistics(teachers, variant):
    assert off_reference(head_statistics(teachers[variant]), variant) == {}


@pytest.mark.parametrize("position", INSTANCE_NORMS)
def test_a_missing_instance_norm_is_caught(real_data, position):
    teacher = cgn(checkpoint(real_data, "double_colored"), "double_colored")
    teacher.network.f_shape[position] = torch.nn.Identity()
    assert off_reference(head_statistics(teacher), "double_colored") != {}


def test_outputs_are_deterministic_and_batch_independent(teachers):
    teacher = teachers["double_colored"]
    z, y = torch.randn(16, 32, generator=torch.Generator().manual_seed(3)), torch.arange(16) % 10
    for im in IMS:
        batch = teacher(im, z, y)
        assert torch.equal(batch, teacher(im, z, y))
        alone = torch.cat([teacher(im, z[i:i + 1], y[i:i + 1]) for i in range(len(y))])
        # oneDNN blocks a batch of 1 and of 16 differently (1.1e-5 apart on one AVX-512 host, capped at AVX2);
        # batch statistics leaking in (train-mode BatchNorm) would move values by orders of magnitude more.
        torch.testing.assert_close(alone, batch, atol=1e-4, rtol=0)


def test_value_ranges_and_sizes(teachers):
    teacher = teachers["wildlife"]
    z, y = torch.randn(50, 32), torch.arange(50) % 10
    mask = teacher("shape", z, y)
    assert mask.shape == (50, 1, 32, 32) and mask.min() >= 1e-4 and mask.max() <= 0.9999
    texture = teacher("texture", z, y)
    assert texture.shape == (50, 3, 32, 32) and texture.abs().max() <= 1
    assert [teacher.num_parameters(im) for im in IMS] == [194_914, 232_489, 232_489]
    assert teacher.z_dims == {im: 32 for im in IMS}


def test_identity_names_the_checkpoint_bytes(teachers):
    identity = teachers["colored"].identity()
    assert identity["kind"] == "cgn-mnist" and identity["variant"] == identity["mirrors"] == "colored"
    assert identity["sha256"].startswith("6b178e7c")


def test_registry_builds_it_from_its_section_and_leaves_the_others_unread(real_data):
    section = CGNMnistSettings(checkpoint=str(checkpoint(real_data, "wildlife")), variant="wildlife")
    teacher = make_teacher(TeacherSettings(kind="cgn-mnist", cgn_mnist=section))
    assert teacher.variant == "wildlife"
    # The synthetic kind never opens the (here absent) checkpoint of the cgn-mnist section.
    unused = CGNMnistSettings(checkpoint="unused.pth")
    assert make_teacher(TeacherSettings(kind="synthetic", cgn_mnist=unused)).kind == "synthetic"


def test_the_teacher_moves_to_a_device_and_gives_the_same_images(teachers, real_data, device, tf32_slack):
    moved = cgn(checkpoint(real_data, "double_colored"), "double_colored").to(device)
    z, y = torch.randn(32, 32, generator=torch.Generator().manual_seed(4)), torch.arange(32) % 10
    for im in IMS:
        out = moved(im, z, y)
        assert out.device.type == device.type
        torch.testing.assert_close(out.cpu(), teachers["double_colored"](im, z, y), atol=1e-4 + tf32_slack,
                                   rtol=0)


def saved(tmp_path, state) -> str:
    path = tmp_path / "teacher.pth"
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def state(real_data):
    return torch.load(checkpoint(real_data, "double_colored"), map_location="cpu", weights_only=True)


def refusal(path, variant="double_colored") -> str:
    with pytest.raises(CheckpointError) as error:
        cgn(path, variant)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_and_unexpected_keys_are_listed(tmp_path, state):
    broken = {k: v for k, v in state.items() if k != "f_shape.4.weight"}
    broken["f_shape.3.weight"] = torch.zeros(1)
    message = refusal(saved(tmp_path, broken))
    assert "missing keys: f_shape.4.weight" in message and "unexpected keys: f_shape.3.weight" in message


def test_wrong_shapes_are_listed(tmp_path, state):
    broken = dict(state, **{"label_emb.weight": torch.zeros(12, 10)})
    assert "wrong shapes: label_emb.weight (12, 10) != (10, 10)" in refusal(saved(tmp_path, broken))


def test_another_architecture_is_refused(tmp_path):
    other = torch.nn.Sequential(torch.nn.Linear(42, 10)).state_dict()
    message = refusal(saved(tmp_path, other))
    assert "not a CGN-MNIST network" in message and "f_shape.0.weight" in message
    assert "unexpected keys: 0.bias" in message


def test_truncated_checkpoint_is_refused(tmp_path, real_data):
    path = tmp_path / "truncated.pth"
    path.write_bytes(checkpoint(real_data, "double_colored").read_bytes()[:1_000_000])
    assert "not a PyTorch checkpoint" in refusal(path)


def test_a_checkpoint_in_torch_saves_legacy_format_gives_the_same_images(tmp_path, state, teachers):
    path = tmp_path / "legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # as PyTorch < 1.6 wrote every checkpoint
    legacy = cgn(path, "double_colored")
    z, y = torch.randn(8, 32, generator=torch.Generator().manual_seed(5)), torch.arange(8) % 10
    for im in IMS:
        assert torch.equal(legacy(im, z, y), teachers["double_colored"](im, z, y))


def test_a_truncated_legacy_checkpoint_is_refused(tmp_path, state):
    whole = io.BytesIO()
    torch.save(state, whole, _use_new_zipfile_serialization=False)
    path = tmp_path / "truncated.pth"
    path.write_bytes(whole.getvalue()[:len(whole.getvalue()) // 2])
    assert "not a readable PyTorch checkpoint" in refusal(path)


def test_weights_of_another_dtype_are_listed(tmp_path, state):
    half = {key: value.half() if value.is_floating_point() else value for key, value in state.items()}
    message = refusal(saved(tmp_path, half))
    assert "wrong dtypes: f_shape.0.bias float16 != float32" in message and "(+43 more)" in message


def test_a_shard_is_refused(tmp_path):
    path = tmp_path / "shard-000000.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("00000000.cls")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"3"))
    assert "not a PyTorch checkpoint" in refusal(path)


def test_a_non_tensor_checkpoint_is_refused(tmp_path, state):
    assert "not tensors" in refusal(saved(tmp_path, {"config": {"im": "shape"}, "state_dict": state}))


def test_a_published_checkpoint_for_another_variant_is_refused(real_data):
    message = refusal(checkpoint(real_data, "wildlife"), variant="colored")
    assert "published wildlife teacher" in message and "'colored'" in message


def test_missing_file_says_where_to_get_it(tmp_path):
    assert "teachers/README.md" in refusal(tmp_path / "absent.pth")


def test_an_unknown_variant_is_refused_in_one_line(real_data):
    with pytest.raises(ValueError, match="^variant: 'rainbow' is not allowed; allowed: colored, double_colored, "
                                         "wildlife$"):
        cgn(checkpoint(real_data, "colored"), "rainbow")
