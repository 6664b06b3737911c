"""The synthetic teacher must be a deterministic, smooth, class-faithful function of (z, y) per mechanism."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from skdcgn.mechanisms import IMS
from skdcgn.mnist.palette import BACKGROUND_RGB, FOREGROUND_RGB, as_unit_range
from skdcgn.settings.teacher import SyntheticSettings, TeacherSettings
from skdcgn.teachers.registry import make_teacher
from skdcgn.teachers.synthetic import SyntheticTeacher


@pytest.fixture(scope="module")
def teacher() -> SyntheticTeacher:
    return SyntheticTeacher()


def noise(teacher: SyntheticTeacher, im: str, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, teacher.z_dims[im], generator=torch.Generator().manual_seed(seed))


def cycling_labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


def per_class(n_per_class: int) -> torch.Tensor:
    return torch.arange(10).repeat_interleave(n_per_class)


# ---- registry and identity -----------------------------------------------------------------------------


def test_the_registry_builds_the_kind_from_its_own_section():
    built = make_teacher(TeacherSettings(synthetic=SyntheticSettings(image_size=64)))
    assert isinstance(built, SyntheticTeacher) and built.image_size == 64


def test_the_registry_imports_only_the_kind_in_use():
    # A teacher's heavy dependencies load only when it is used: building the synthetic teacher must not import
    # the checkpointed kinds' modules.
    script = ("import sys; from skdcgn.settings.teacher import TeacherSettings; from skdcgn.teachers.registry import "
              "make_teacher; make_teacher(TeacherSettings()); "
              "print(sorted(m for m in sys.modules if m.startswith('skdcgn.teachers.')))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "skdcgn.teachers.synthetic" in loaded and "cgn_mnist" not in loaded and "checkpoints" not in loaded


def test_identity_records_noise_layout(teacher):
    assert teacher.identity() == {
        "kind": "synthetic",
        "mirrors": "double_colored",
        "image_size": 32,
        "num_classes": 10,
        "z_dims": {"shape": 16, "texture": 8, "background": 8},
    }


def test_num_parameters_counts_each_mechanisms_constants(teacher):
    counts = {im: teacher.num_parameters(im) for im in IMS}
    # Shape carries skeletons and jitter matrices; the patterns are little more than a palette.
    assert counts["shape"] > 1000
    assert 30 < counts["texture"] < 100 and 30 < counts["background"] < 100
    with pytest.raises(ValueError, match="allowed: shape, texture, background"):
        teacher.num_parameters("colour")


# ---- determinism --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("im", IMS)
def test_same_inputs_give_identical_images_across_calls_and_instances(teacher, im):
    z, y = noise(teacher, im, 64), cycling_labels(64)
    first = teacher(im, z, y)
    assert torch.equal(first, teacher(im, z, y))
    assert torch.equal(first, SyntheticTeacher()(im, z, y))


@pytest.mark.parametrize("im", IMS)
def test_a_sample_does_not_depend_on_its_batch(teacher, im):
    # Large enough that vectorised and scalar kernel paths both run (torch.sigmoid, for one, differs there).
    n = 1500
    z, y = noise(teacher, im, n, seed=1), torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    whole = teacher(im, z, y)
    pieces = torch.cat([teacher(im, z[i : i + 7], y[i : i + 7]) for i in range(0, n, 7)])
    assert torch.equal(whole, pieces)


@pytest.mark.parametrize("im", IMS)
def test_every_noise_dimension_changes_the_image(teacher, im):
    # A dead dimension would leave the student less to learn than the z layout promises.
    z, y = noise(teacher, im, 200, seed=6), cycling_labels(200)
    base = teacher(im, z, y)
    steps = torch.eye(z.shape[1])
    effects = torch.stack([(teacher(im, z + step, y) - base).abs().mean() for step in steps])
    # z7 only touches digits 1, 4 and 7, so its average effect is the smallest.
    assert effects.min() > max(1e-3, 0.05 * effects.max()), effects


# ---- shapes, dtypes, ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("im", IMS)
def test_output_shape_dtype_and_range(im, size):
    t = SyntheticTeacher(SyntheticSettings(image_size=size))
    z = noise(t, im, 40) * 3  # well into the tanh tails
    out = t(im, z, cycling_labels(40))
    channels = 1 if im == "shape" else 3
    assert out.shape == (40, channels, size, size) and out.dtype == torch.float32
    low = 0.0 if im == "shape" else -1.0
    assert out.min() >= low and out.max() <= 1.0


def test_empty_batch(teacher):
    for im in IMS:
        out = teacher(im, torch.zeros(0, teacher.z_dims[im]), torch.zeros(0, dtype=torch.long))
        assert out.shape[0] == 0


# ---- the shape mechanism ------------------------------------------------------------------------------------


def test_masks_are_near_binary_like_the_cgn_teachers(teacher):
    # Reference CGN masks: mean 0.165, 79.7 % of pixels < 0.01, 13.4 % > 0.99.
    m = teacher("shape", noise(teacher, "shape", 1000), cycling_labels(1000))
    assert 0.12 < m.mean() < 0.22
    assert 0.72 < (m < 0.01).float().mean() < 0.88
    assert 0.08 < (m > 0.99).float().mean() < 0.2


@pytest.mark.parametrize("size", [32, 64])
def test_digits_never_touch_the_frame_even_for_extreme_noise(size):
    t = SyntheticTeacher(SyntheticSettings(image_size=size))
    signs = torch.randn(2000, 16, generator=torch.Generator().manual_seed(2)).sign()
    m = t("shape", signs * 10, cycling_labels(2000))[:, 0]
    border = torch.cat([m[:, 0], m[:, -1], m[:, :, 0], m[:, :, -1]], dim=1)
    assert border.max() == 0


def test_different_noise_gives_clearly_different_masks_of_the_same_digit(teacher):
    masks = teacher("shape", noise(teacher, "shape", 200), per_class(20))[:, 0] > 0.5
    x = masks.flatten(1).float()
    inter = x @ x.T
    iou = inter / (x.sum(1)[:, None] + x.sum(1)[None, :] - inter)
    same_class = per_class(20)[:, None] == per_class(20)[None, :]
    pairs = same_class & ~torch.eye(200, dtype=torch.bool)
    # A lookup table would give IoU 1; real variety keeps even the closest pair of a class visibly apart.
    assert iou[pairs].max() < 0.95
    assert iou[pairs].mean() < 0.6


def test_a_tiny_change_of_noise_gives_a_tiny_change_of_mask(teacher):
    z, y = noise(teacher, "shape", 500), cycling_labels(500)
    step = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
    step = step / step.norm(dim=1, keepdim=True)
    base = teacher("shape", z, y)
    near = teacher("shape", z + 1e-3 * step, y)
    far = teacher("shape", z + 0.5 * step, y)
    assert (near - base).abs().max() < 0.02
    assert (far - base).abs().mean() > 50 * (near - base).abs().mean()


def test_each_class_draws_its_own_digit(teacher):
    train = teacher("shape", noise(teacher, "shape", 1000, seed=4), per_class(100))[:, 0]
    means = train.view(10, 100, -1).mean(1)
    core = means > 0.5
    inter = (core[:, None] & core[None, :]).sum(-1).float()
    union = (core[:, None] | core[None, :]).sum(-1).float()
    iou = inter / union
    assert iou[~torch.eye(10, dtype=torch.bool)].max() < 0.85
    # Stronger: fresh single masks are mostly closest to their own class mean, and no class passes for another.
    truth = per_class(50)
    test = teacher("shape", noise(teacher, "shape", 500, seed=5), truth)[:, 0].flatten(1)
    predicted = torch.cdist(test, means).argmin(1)
    assert (predicted == truth).float().mean() > 0.7
    confusion = torch.zeros(10, 10).index_put_((truth, predicted), torch.ones(500), accumulate=True) / 50
    assert (confusion - torch.eye(10)).max() < 0.25


def test_optional_strokes_grow_smoothly_from_their_anchor(teacher):
    # The flag of a 1 is drawn for large z[7] and absent for small; in between it grows, it does not jump.
    z = torch.zeros(41, 16)
    z[:, 7] = torch.linspace(-4, 4, 41)
    area = teacher("shape", z, torch.ones(41, dtype=torch.long)).sum((1, 2, 3))
    assert area[-1] > area[0] + 5
    assert (area.diff() >= -1e-3).all() and area.diff().max() < 3


# ---- texture and background ------------------------------------------------------------------------------


@pytest.mark.parametrize("im, palette", [("texture", FOREGROUND_RGB), ("background", BACKGROUND_RGB)])
def test_colour_is_the_class_palette_colour_plus_a_faint_pattern(teacher, im, palette):
    y = per_class(20)
    out = teacher(im, noise(teacher, im, 200), y)
    colour = as_unit_range(palette)[y][:, :, None, None]
    # Colours sit at 0.9 of the palette value to leave headroom, and the pattern stays within 0.1 of that.
    assert (out - 0.9 * colour).abs().max() <= 0.1 + 1e-6
    # The mean colour identifies the class: it is nearest to its own class's (scaled) palette colour.
    distances = torch.cdist(out.mean((2, 3)), 0.9 * as_unit_range(palette))
    assert torch.equal(distances.argmin(dim=1), y)


@pytest.mark.parametrize("im", ["texture", "background"])
def test_patterns_vary_with_noise_but_stay_low_contrast(teacher, im):
    out = teacher(im, noise(teacher, im, 100), torch.full((100,), 3))
    spread = out.std(dim=(2, 3))
    assert spread.max() < 0.08
    assert spread.mean() > 0.005
    assert (out[1:] - out[:1]).abs().amax((1, 2, 3)).min() > 0.01


def test_texture_stripes_are_finer_than_background_blobs(teacher):
    # Different kinds of pattern: waves change from pixel to pixel, the background only drifts slowly.
    y = cycling_labels(200)
    texture = teacher("texture", noise(teacher, "texture", 200), y)
    background = teacher("background", noise(teacher, "background", 200), y)

    def roughness(x: torch.Tensor) -> torch.Tensor:
        return (x.diff(dim=3).abs().mean() / x.std(dim=(2, 3)).mean())

    assert roughness(texture) > 2 * roughness(background)


# ---- bad inputs ---------------------------------------------------------------------------------------------


def test_wrong_noise_size_names_the_expected_shape(teacher):
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 16\)"):
        teacher("shape", torch.zeros(4, 8), cycling_labels(4))


def test_unknown_mechanism_names_allowed_mechanisms(teacher):
    with pytest.raises(ValueError, match="allowed: shape, texture, background"):
        teacher("colour", torch.zeros(4, 8), cycling_labels(4))


def test_labels_outside_the_classes_are_refused(teacher):
    with pytest.raises(ValueError, match=r"0\.\.9"):
        teacher("texture", torch.zeros(2, 8), torch.tensor([3, 10]))


# ---- many classes, large images, any device ------------------------------------------------------------------


@pytest.fixture(scope="module")
def large() -> SyntheticTeacher:
    return SyntheticTeacher(SyntheticSettings(num_classes=1000, image_size=256))


def test_many_classes_keep_the_first_ten_and_repeat_the_digits(large):
    ten = SyntheticTeacher(SyntheticSettings(image_size=256))
    z, y = noise(large, "shape", 20, seed=3), cycling_labels(20)
    assert torch.equal(large("shape", z, y), ten("shape", z, y))  # classes 0-9: the 10-class teacher's
    later = large("shape", z, y + 990)  # classes 990-999 draw digits 0-9 again
    assert torch.equal(later, ten("shape", z, y))
    assert large.mirrors is None and ten.mirrors == "double_colored"


@pytest.mark.parametrize("im", ["texture", "background"])
def test_classes_past_the_palette_get_distinct_colours_in_range(large, im):
    y = torch.arange(1000)
    out = large(im, noise(large, im, 1000, seed=4), y)
    assert out.shape == (1000, 3, 256, 256) and out.min() >= -1 and out.max() <= 1
    colours = out.mean(dim=(2, 3))
    assert torch.cdist(colours[10:], colours[10:]).fill_diagonal_(1.0).min() > 1e-3


@pytest.mark.parametrize("im", IMS)
def test_the_teacher_moves_to_a_device_and_draws_the_same_images(teacher, im, device):
    z, y = noise(teacher, im, 50, seed=5), cycling_labels(50)
    moved = SyntheticTeacher().to(device)
    out = moved(im, z, y)
    assert out.device.type == device.type
    torch.testing.assert_close(out.cpu(), teacher(im, z, y), atol=1e-5, rtol=0)
