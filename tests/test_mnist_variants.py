"""The CGN-MNIST variants built from real digits: masks, colours, texture crops, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from skdcgn.mnist.idx import load_mnist_test
from skdcgn.mnist.variants import (COLORED_NOISE_STD, VARIANTS, Textures, colourise, digit_masks, load_textures,
                                   same_colour)
from skdcgn.mnist.palette import BACKGROUND_RGB, COLORED_DIGIT_RGB, FOREGROUND_RGB, as_unit_range

N = 400
NOISE_STD = 0.02  # the 0.01 colour noise, doubled by the map from 0..1 to [-1, 1]
CROP, PAD, TEXTURE = 32, 3, 150


@pytest.fixture(scope="module")
def digits(real_data) -> torch.Tensor:
    return load_mnist_test(real_data.mnist, download=False)[0][:N]


@pytest.fixture(scope="module")
def textures(real_data) -> Textures:
    return load_textures(real_data.textures)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_classes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = seeded(seed)
    return torch.randint(10, (n,), generator=generator), torch.randint(10, (n,), generator=generator)


def per_image_colour(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(N, 3) colour of a region (N, 1, 32, 32), after checking that the region is one flat colour per image."""
    count = region.sum(dim=(2, 3))
    colour = (images * region).sum(dim=(2, 3)) / count
    assert (count > 0).all()
    assert torch.allclose(images * region, colour[:, :, None, None] * region, atol=1e-6)
    return colour


def test_digit_masks_are_binary_nearest_resizes(digits):
    masks = digit_masks(digits)
    assert masks.shape == (N, 1, 32, 32) and masks.dtype == torch.float32
    source = torch.arange(32) * 28 // 32  # nearest: output pixel i samples input pixel floor(i * 28 / 32)
    manual = (digits[:, source][:, :, source].float() / 255 > 0.1).float()
    assert torch.equal(masks[:, 0], manual)
    assert set(masks.unique().tolist()) == {0.0, 1.0}


def test_digit_mask_threshold_sits_between_25_and_26():
    # 25 / 255 = 0.098 stays background; 26 / 255 = 0.102 is already ink.
    faint = torch.tensor([25, 26], dtype=torch.uint8).repeat_interleave(14).expand(28, 28)[None]
    assert digit_masks(faint)[0, 0, 0].tolist() == [0.0] * 16 + [1.0] * 16


def test_blurred_digit_masks_grey_the_edges_and_nothing_else(digits):
    binary, blurred = digit_masks(digits), digit_masks(digits, blur=0.45)
    assert blurred.min() >= 0 and blurred.max() <= 1
    soft = (blurred > 0.01) & (blurred < 0.99)
    assert 0.05 < soft.float().mean() < 0.2  # the edges of 32x32 strokes: about a tenth of the pixels
    # A 0.45 px Gaussian reaches 2 px (ceil(3 sigma)): a pixel whose 5x5 neighbourhood is one value keeps it.
    uniform = F.max_pool2d(binary, 5, 1, 2) == -F.max_pool2d(-binary, 5, 1, 2)
    assert torch.allclose(blurred[uniform], binary[uniform], atol=1e-6)
    assert not soft[uniform].any()
    # A weighted mean: the ink moves across edges, none appears or vanishes (no digit touches the border).
    assert torch.allclose(blurred.sum(dim=(1, 2, 3)), binary.sum(dim=(1, 2, 3)), rtol=1e-4)


def test_double_colored_with_blurred_masks_blends_its_own_two_colours(digits):
    fg, bg = random_classes(N, seed=9)
    crisp = colourise(digits, fg, bg, "double_colored", seeded())
    soft = colourise(digits, fg, bg, "double_colored", seeded(), mask_blur=0.45)
    binary, blurred = digit_masks(digits), digit_masks(digits, blur=0.45)
    # The same colours are drawn: away from the edges the images are the crisp ones.
    settled = (blurred == binary).expand_as(crisp)
    assert torch.equal(soft[settled], crisp[settled])
    # On the edges each pixel is the mask's blend of that image's digit and background colour (in the channels
    # where neither colour's noise went past the clamp to [-1, 1]).
    digit, ground = per_image_colour(crisp, binary), per_image_colour(crisp, 1 - binary)
    blend = blurred * digit[:, :, None, None] + (1 - blurred) * ground[:, :, None, None]
    unclamped = ((digit.abs() < 1) & (ground.abs() < 1))[:, :, None, None].expand_as(crisp)
    assert (~settled & unclamped).float().mean() > 0.03
    assert torch.allclose(soft[unclamped], blend[unclamped], atol=1e-5)


def test_double_colored_paints_fg_and_bg_palettes(digits):
    fg, bg = random_classes(N, seed=1)
    images = colourise(digits, fg, bg, "double_colored", seeded())
    masks = digit_masks(digits)
    assert images.shape == (N, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert (per_image_colour(images, masks) - as_unit_range(FOREGROUND_RGB)[fg]).abs().max() < 5 * NOISE_STD
    assert (per_image_colour(images, 1 - masks) - as_unit_range(BACKGROUND_RGB)[bg]).abs().max() < 5 * NOISE_STD


def test_colour_noise_is_drawn_per_image_with_std_001(digits):
    fg, bg = random_classes(N, seed=2)
    images = colourise(digits, fg, bg, "double_colored", seeded())
    palette = torch.tensor(FOREGROUND_RGB)[fg]
    deviation = per_image_colour(images, digit_masks(digits)) - as_unit_range(FOREGROUND_RGB)[fg]
    # Channels at 0 or 255 are clamped half the time; the others show the raw noise, image by image.
    unclamped = deviation[(palette > 0) & (palette < 255)]
    assert unclamped.numel() > 100
    assert 0.8 * NOISE_STD < unclamped.std() < 1.2 * NOISE_STD


def test_colored_paints_the_digit_on_black(digits):
    fg, bg = random_classes(N, seed=3)
    images = colourise(digits, fg, bg, "colored", seeded())
    masks = digit_masks(digits)
    assert torch.equal(images * (1 - masks), -(1 - masks).expand_as(images))
    deviation = per_image_colour(images, masks) - as_unit_range(COLORED_DIGIT_RGB)[fg]
    assert deviation.abs().max() < 5 * 2 * COLORED_NOISE_STD and deviation.abs().mean() > NOISE_STD
    assert torch.equal(images, colourise(digits, fg, (bg + 1) % 10, "colored", seeded()))


def test_same_colour_marks_equal_palette_colours():
    # Class 0's digit is yellow, the background of class 4; class 6's digit is darkgreen, background 0.
    fg, bg = torch.tensor([0, 0, 6, 6, 3]), torch.tensor([4, 0, 0, 6, 7])
    assert same_colour("double_colored", fg, bg).tolist() == [True, False, True, False, True]
    every = torch.arange(100)
    assert same_colour("double_colored", every // 10, every % 10).sum() == 10
    assert same_colour("wildlife", fg, bg) is None and same_colour("colored", fg, bg) is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_seed_fixes_the_images(digits, textures, variant):
    fg, bg = random_classes(N, seed=4)
    first = colourise(digits, fg, bg, variant, seeded(5), textures)
    assert torch.equal(first, colourise(digits, fg, bg, variant, seeded(5), textures))
    assert not torch.equal(first, colourise(digits, fg, bg, variant, seeded(6), textures))


def reflected(positions: torch.Tensor) -> torch.Tensor:
    """Texture pixel seen at each position of the reflect-padded texture (reflect: the edge is not repeated)."""
    offset = (positions - PAD).abs()
    return torch.where(offset > TEXTURE - 1, 2 * (TEXTURE - 1) - offset, offset)


def coded_kind(sign: float) -> torch.Tensor:
    """Textures whose pixels spell out (sign * (class + 1) / 16, row / 256, column / 256), all exact in float32."""
    rows = torch.arange(TEXTURE, dtype=torch.float32)[:, None].expand(TEXTURE, TEXTURE) / 256
    return torch.stack([torch.stack([torch.full_like(rows, sign * (c + 1) / 16), rows, rows.T]) for c in range(10)])


def coded_textures() -> Textures:
    """Positive class codes for objects, negative for backgrounds, so each pixel tells which texture it came from."""
    return Textures(object=coded_kind(1.0), background=coded_kind(-1.0))


def crop_origin(coords: torch.Tensor, first: int) -> int:
    """Crop origin in the padded texture under which `coords` (texture indices from position `first` on) appear."""
    seen = reflected(torch.arange(TEXTURE + 2 * PAD))  # the texture index at each padded position
    windows = seen[first:].unfold(0, len(coords), 1)[: TEXTURE + 2 * PAD - CROP + 1]
    matches = (windows == coords).all(dim=1).nonzero()
    assert len(matches) > 0, f"{coords.tolist()} is no window of the padded texture"
    return int(matches[0])


def test_wildlife_crops_independent_windows_of_the_class_textures():
    n = 2000  # enough that every one of the 125 origins turns up on each axis
    fg, bg = random_classes(n, seed=7)
    half = torch.zeros(n, 28, 28, dtype=torch.uint8)
    half[:, :14] = 255  # masks: rows 0..15 digit, rows 16..31 background
    images = colourise(half, fg, bg, "wildlife", seeded(), coded_textures())
    assert torch.equal(images[:, 0, :16], ((fg + 1) / 16)[:, None, None].expand(n, 16, 32))
    assert torch.equal(images[:, 0, 16:], (-(bg + 1) / 16)[:, None, None].expand(n, 16, 32))
    rows, cols = (images[:, 1] * 256).long(), (images[:, 2] * 256).long()
    origins = []
    for image_rows, image_cols in zip(rows, cols):
        fg_top, fg_left = crop_origin(image_rows[:16, 0], 0), crop_origin(image_cols[0], 0)
        bg_top, bg_left = crop_origin(image_rows[16:, 0], 16), crop_origin(image_cols[16], 0)
        # Whole 2-D windows, not just the sampled row and column.
        assert torch.equal(image_rows[:16], reflected(fg_top + torch.arange(16))[:, None].expand(16, 32))
        assert torch.equal(image_cols[16:], reflected(bg_left + torch.arange(32)).expand(16, 32))
        origins.append((fg_top, fg_left, bg_top, bg_left))
    origins = torch.tensor(origins)
    assert len(set(map(tuple, origins[:, :2].tolist()))) > 0.8 * n  # positions differ between images
    assert (origins[:, :2] != origins[:, 2:]).any(dim=1).float().mean() > 0.9  # fg and bg drawn independently
    # Both borders of the padded texture are reachable, on every axis of both crops.
    assert (origins.min(dim=0).values == 0).all() and (origins.max(dim=0).values == TEXTURE + 2 * PAD - CROP).all()


def test_wildlife_crops_real_textures(textures):
    fg, bg = torch.tensor([2, 9]), torch.tensor([5, 2])
    full, empty = torch.full((2, 28, 28), 255, dtype=torch.uint8), torch.zeros(2, 28, 28, dtype=torch.uint8)
    foregrounds = colourise(full, fg, bg, "wildlife", seeded(), textures)
    backgrounds = colourise(empty, fg, bg, "wildlife", seeded(), textures)
    for images, kind, classes in ((foregrounds, textures.object, fg), (backgrounds, textures.background, bg)):
        # All windows of each padded texture: (10, 3, 125, 125, 32, 32) as a view, no copy.
        windows = F.pad(kind, (PAD,) * 4, mode="reflect").unfold(2, CROP, 1).unfold(3, CROP, 1)
        for image, label in zip(images, classes):
            found = (windows[label] == image[:, None, None]).all(dim=(0, 3, 4))
            wrong = (windows[(label + 1) % 10] == image[:, None, None]).all(dim=(0, 3, 4))
            assert found.any() and not wrong.any()


def test_real_textures_are_150px_in_unit_range(textures):
    for kind in (textures.object, textures.background):
        assert kind.shape == (10, 3, 150, 150) and kind.dtype == torch.float32
        assert kind.min() >= -1 and kind.max() <= 1 and kind.std() > 0.1
    assert not torch.equal(textures.object, textures.background)


def write_textures(folder: Path, skip: tuple[str, int] | None = None, extra: tuple[str, int] | None = None) -> None:
    """Flat grey JPEGs, class c at grey 20 * c, in an odd size so the resize to 150x150 is exercised."""
    for kind in ("object", "background"):
        (folder / kind).mkdir(parents=True)
        for c in range(10):
            if (kind, c) != skip:
                Image.new("RGB", (40, 60), (20 * c,) * 3).save(folder / kind / f"{c}_flat.jpg")
    if extra is not None:
        Image.new("RGB", (40, 60)).save(folder / extra[0] / f"{extra[1]}_twin.jpg")


def test_load_textures_resizes_and_maps_to_unit_range(tmp_path):
    write_textures(tmp_path)
    loaded = load_textures(tmp_path)
    grey = torch.arange(10, dtype=torch.float32) * 20 / 127.5 - 1
    assert loaded.object.shape == (10, 3, 150, 150)
    assert (loaded.background - grey[:, None, None, None]).abs().max() < 3 / 127.5  # JPEG rounding only


@pytest.mark.parametrize(("skip", "extra", "expected"), [
    (None, None, r"object/0_\*\.jpg .*found 0"),  # no folder at all
    (("background", 3), None, r"background/3_\*\.jpg .*found 0"),
    (None, ("object", 5), r"object/5_\*\.jpg .*found 2"),
])
def test_load_textures_names_the_missing_or_ambiguous_file(tmp_path, skip, extra, expected):
    folder = tmp_path / "textures"
    if skip or extra:
        write_textures(folder, skip, extra)
    with pytest.raises(ValueError, match=expected) as caught:
        load_textures(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_colourise_rejects_bad_requests(digits, textures):
    fg, bg = random_classes(N, seed=8)
    with pytest.raises(ValueError, match="colored, double_colored, wildlife"):
        colourise(digits, fg, bg, "tinted", seeded())
    with pytest.raises(ValueError, match="load_textures"):
        colourise(digits, fg, bg, "wildlife", seeded())
    with pytest.raises(ValueError, match=f"{N} digits but {N - 1} fg"):
        colourise(digits, fg[1:], bg, "double_colored", seeded())
