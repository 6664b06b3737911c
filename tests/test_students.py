import pytest
import torch

from skdcgn.distillation.checkpoints import load_student, load_students, save_student
from skdcgn.distillation.losses import (KL_PLACES, generator_loss, kl_loss, layer_weights, pixel_kl_loss,
                                        pixel_loss)
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator, count_parameters
from skdcgn.settings.distill import LossSettings

TEACHER = {"kind": "synthetic", "image_size": 32, "num_classes": 10}


def make_student(im: str = "shape", widths=(64, 64, 32, 16)) -> StudentGenerator:
    torch.manual_seed(0)
    return StudentGenerator(im, z_dim=16, num_classes=10, image_size=32, widths=list(widths))


@pytest.mark.parametrize("im, channels, low, high", [("shape", 1, 0, 1), ("texture", 3, -1, 1)])
def test_student_output_shape_and_range(im, channels, low, high):
    out = make_student(im)(torch.randn(8, 16) * 5, torch.arange(8))
    assert out.shape == (8, channels, 32, 32)
    assert out.min() >= low and out.max() <= high


def test_default_student_is_smaller_than_the_cgn_mnist_mechanisms():
    # CGN-MNIST: shape head ~195k parameters, each texture head ~232k.
    assert count_parameters(make_student("shape")) < 195_000 / 2
    assert count_parameters(make_student("texture")) < 232_000 / 2


def test_student_uses_the_class():
    student = make_student().eval()
    z = torch.randn(1, 16).repeat(10, 1)
    out = student(z, torch.arange(10))
    assert (out[0] - out[1]).abs().max() > 0  # same noise, different class: a different image


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        StudentGenerator("shape", 16, 10, 32, [64, 32, 16, 8, 4, 2, 1])


def test_discriminator_returns_logit_and_one_feature_map_per_stage():
    disc = ProjectionDiscriminator(3, 10, [16, 32, 64])
    logit, features = disc(torch.randn(4, 3, 32, 32), torch.arange(4))
    assert logit.shape == (4,)
    assert [f.shape[1:] for f in features] == [(16, 16, 16), (32, 8, 8), (64, 4, 4)]


def test_layer_weights_follow_tinygan():
    assert layer_weights(5) == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    assert layer_weights(3) == [1 / 8, 1 / 4, 1.0]


def test_pixel_losses():
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert pixel_loss(a, b, "l1") == pytest.approx(0.5)
    assert pixel_loss(a, b, "l2") == pytest.approx(0.25)


def test_kl_is_zero_for_equal_features_and_positive_otherwise():
    features = [torch.randn(2, 8, 4, 4)]
    assert kl_loss(features, features, 4.0) == pytest.approx(0.0, abs=1e-6)
    assert kl_loss(features, [torch.randn(2, 8, 4, 4)], 4.0) > 0


def test_pixel_kl_compares_where_the_mass_lies():
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:4, 2:4] = 1
    moved = torch.roll(mask, shifts=3, dims=3)
    assert pixel_kl_loss(mask, mask, 1.0) == pytest.approx(0.0, abs=1e-6)
    # Same pixel values, elsewhere: a distribution over channels could not tell, one over positions does.
    assert pixel_kl_loss(mask, moved, 1.0) > 0.05


def test_kl_place_selects_what_is_compared():
    torch.manual_seed(1)
    disc = ProjectionDiscriminator(3, 10, [16, 32, 64]).eval()  # eval: spectral norm's power step stays put
    fake, real, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1, torch.arange(4)
    features, last, pixels = (generator_loss(LossSettings(kl_weight=1.0, kl_on=place), fake, real, disc(fake, y),
                                             disc(real, y))[1]["kl"] for place in KL_PLACES)
    teacher_features, student_features = disc(real, y)[1], disc(fake, y)[1]
    assert features == pytest.approx(kl_loss(teacher_features, student_features, 4.0).item(), rel=1e-5)
    assert last == pytest.approx(kl_loss(teacher_features[-1:], student_features[-1:], 4.0).item(), rel=1e-5)
    assert pixels == pytest.approx(pixel_kl_loss(real, fake, 4.0).item(), rel=1e-5)
    assert len({features.item(), last.item(), pixels.item()}) == 3


def test_only_a_pixel_kl_leaves_the_discriminator_out():
    pixel_only = {"adversarial_weight": 0.0, "feature_weight": 0.0}
    assert not LossSettings(**pixel_only, kl_weight=1.0, kl_on="pixels").needs_discriminator
    assert LossSettings(**pixel_only, kl_weight=1.0, kl_on="last_layer").needs_discriminator
    assert not LossSettings(**pixel_only, kl_weight=0.0, kl_on="features").needs_discriminator
    with pytest.raises(ValueError, match="^kl_on: 'logits' is not allowed; allowed: features, last_layer, pixels$"):
        LossSettings(kl_on="logits")


def student_gradient(kl_weight: float, kl_on: str = "features") -> list[torch.Tensor]:
    student = make_student("texture")
    torch.manual_seed(1)
    disc = ProjectionDiscriminator(3, 10, [16, 32, 64])
    z, y = torch.randn(8, 16), torch.arange(8)
    teacher_images = torch.rand(8, 3, 32, 32) * 2 - 1
    fake = student(z, y)
    weights = LossSettings(kl_weight=kl_weight, kl_on=kl_on)
    loss, parts = generator_loss(weights, fake, teacher_images, disc(fake, y), disc(teacher_images, y))
    loss.backward()
    assert parts["kl"] > 0
    return [p.grad.clone() for p in student.parameters()]


@pytest.mark.parametrize("kl_on", KL_PLACES)
def test_kl_weight_changes_the_student_gradient(kl_on):
    # The seed code computed KL and never added it to the loss: its weight changed nothing. Here it must.
    without, with_kl = student_gradient(0.0, kl_on), student_gradient(0.5, kl_on)
    assert any(not torch.allclose(a, b) for a, b in zip(without, with_kl))
    # ...and by exactly the gradient of the weighted KL term: the rest of the objective is unchanged.
    doubled = student_gradient(1.0, kl_on)
    for a, b, c in zip(without, with_kl, doubled):
        torch.testing.assert_close(c - a, 2 * (b - a), atol=1e-5, rtol=1e-3)


def test_negative_weight_is_refused():
    with pytest.raises(ValueError, match="^kl_weight: -1 is out of range; allowed: float >= 0.0$"):
        LossSettings(kl_weight=-1)


def test_checkpoint_carries_its_config_and_loads_onto_any_device(tmp_path, device, tf32_slack):
    student = make_student("texture", widths=(32, 32, 16, 8))
    save_student(tmp_path / "s.pt", student, TEACHER)
    loaded, teacher = load_student(tmp_path / "s.pt", device)
    assert teacher == TEACHER and loaded.config == student.config and not loaded.training
    assert next(loaded.parameters()).device.type == device.type
    z, y = torch.randn(4, 16), torch.arange(4)
    torch.testing.assert_close(loaded(z.to(device), y.to(device)).cpu(), student.eval()(z, y), atol=1e-5 + tf32_slack,
                               rtol=0)


def test_both_memory_layouts_draw_the_same_images(device, tf32_slack):
    """benchmarks.student_forward times a student in either layout: a faster one must draw the same images."""
    student = make_student("texture").to(device).eval()
    z, y = torch.randn(4, 16, device=device), torch.arange(4, device=device)
    with torch.no_grad():
        default = student(z, y)
        student.layout = torch.contiguous_format
        contiguous = student(z, y)
    assert default.is_contiguous(memory_format=torch.channels_last) and contiguous.is_contiguous()
    torch.testing.assert_close(contiguous, default, atol=1e-5 + tf32_slack, rtol=0)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, None])
def test_foreign_checkpoint_gets_one_clear_error(tmp_path, content):
    path = tmp_path / "s.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3)}, path)  # a torch file, but not a student
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="not an SKDCGN student checkpoint"):
        load_student(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    save_student(tmp_path / "s.pt", make_student(), TEACHER)
    data = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "s.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an SKDCGN student checkpoint"):
        load_student(tmp_path / "s.pt")


def save_set(directory, teachers: dict, ims: dict | None = None) -> None:
    """One student per mechanism folder; `ims` can put a student of another mechanism in a folder."""
    for im, teacher in teachers.items():
        (directory / im).mkdir(parents=True, exist_ok=True)
        save_student(directory / im / "student.pt", make_student((ims or {}).get(im, im)), teacher)


ALL_IMS = ("shape", "texture", "background")


def test_a_set_from_one_teacher_loads(tmp_path):
    save_set(tmp_path, {im: TEACHER for im in ALL_IMS})
    students, teacher = load_students(tmp_path)
    assert teacher == TEACHER and [s.config["im"] for s in students.values()] == list(ALL_IMS)


@pytest.mark.parametrize("case, expected", [("two teachers", "distilled from different teachers"),
                                            ("wrong mechanism", "holds a background student, expected texture")])
def test_students_of_mixed_teachers_or_swapped_mechanisms_are_refused(tmp_path, case, expected):
    teachers = {im: TEACHER for im in ALL_IMS}
    if case == "two teachers":
        teachers["background"] = {**TEACHER, "kind": "cgn-mnist", "sha256": "7aa06c90"}
    save_set(tmp_path, teachers, {"texture": "background"} if case == "wrong mechanism" else None)
    with pytest.raises(ValueError, match=expected):
        load_students(tmp_path)


# The ImageNet CGN's students: 1,000 classes at 256x256 (BigGAN-deep-256 has 55,880,833 parameters).
IMAGENET_WIDTHS = [256, 256, 128, 64, 32, 16]  # 8x8 at 256 px, 4x4 at 128 px


def imagenet_student(im: str = "texture", image_size: int = 256, class_embedding: int = 128) -> StudentGenerator:
    torch.manual_seed(0)
    return StudentGenerator(im, 128, 1000, image_size, IMAGENET_WIDTHS, class_embedding)


@pytest.mark.parametrize("image_size", [128, 256])
def test_a_learned_class_embedding_keeps_a_1000_class_student_under_an_eighth_of_biggan(image_size):
    assert count_parameters(imagenet_student(image_size=image_size)) <= 55_880_833 / 8
    # The one-hot alternative: 1,000 more inputs to a stem of 256 x 8 x 8 outputs alone costs 16.4 M.
    assert count_parameters(imagenet_student(image_size=256, class_embedding=0)) > 55_880_833 / 8


def test_embedded_class_norms_start_as_plain_batchnorm():
    from skdcgn.distillation.students import ConditionalBatchNorm

    norm, x = ConditionalBatchNorm(8, 1000, embedding_dim=16), torch.randn(4, 8, 5, 5)
    reference = torch.nn.BatchNorm2d(8, affine=False)
    torch.testing.assert_close(norm(x, torch.randn(4, 16)), reference(x))


def test_a_1000_class_student_renders_256_and_learns_its_embedding():
    student = imagenet_student("shape")
    z, y = torch.randn(2, 128), torch.tensor([3, 999])
    out = student(z, y)
    assert out.shape == (2, 1, 256, 256) and 0 <= out.min() and out.max() <= 1
    out.mean().backward()
    rows = student.embedding.weight.grad.abs().sum(dim=1)
    assert rows[3] > 0 and rows[999] > 0 and rows[0] == 0  # only the classes in the batch move
    student.eval()
    same_noise = student(z[:1].repeat(2, 1), torch.tensor([3, 4]))
    assert (same_noise[0] - same_noise[1]).abs().max() > 0


def test_a_checkpoint_carries_the_class_embedding(tmp_path):
    student = imagenet_student(image_size=128).eval()
    save_student(tmp_path / "student.pt", student, {"kind": "cgn-imagenet"})
    loaded, _ = load_student(tmp_path / "student.pt")
    assert loaded.config["class_embedding"] == 128
    z, y = torch.randn(2, 128), torch.tensor([0, 500])
    assert torch.equal(loaded(z, y), student(z, y))
