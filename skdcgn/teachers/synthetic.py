"""A procedural stand-in for the CGN-MNIST teacher: double-coloured digits drawn from stroke skeletons.

It lets sampling, distillation and evaluation run offline and in CI without the pretrained checkpoints, while
still posing a real learning problem: each mechanism is a smooth, non-trivial function of its own noise, so a
student has to model pose, handwriting-like deformation and texture rather than memorise ten images.

Any number of classes and any image size (`teacher.synthetic`), so that the many-class, large-image path runs in
CI: class c draws digit c mod 10; the first ten classes take the double-colored MNIST palettes (then the teacher
mirrors that dataset), later ones colours drawn once from a fixed seed.

Noise layout (each z ~ N(0, 1); every dimension enters through tanh or a sigmoid, the jitter ones after a fixed
linear projection, so outputs stay bounded and vary smoothly with z):
    shape (16):      0-1 shift x/y, 2 rotation, 3 height, 4 width, 5 slant, 6 stroke width,
                     7 optional strokes (flag of 1, bar of 7, closed 4), 8-15 smooth per-point jitter
    texture (8):     0-2 angle/frequency/phase of wave A, 3-5 of wave B, 6 A/B mix, 7 amplitude
    background (8):  0-1 linear gradient, 2-3 and 4-5 centres of two soft blobs, 6-7 their signed strengths
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from skdcgn.mnist.palette import BACKGROUND_RGB, FOREGROUND_RGB, as_unit_range
from skdcgn.settings.teacher import SyntheticSettings
from skdcgn.teachers.base import Teacher

# A stroke point is (x, y) or (x, y, anchor_x, anchor_y): the latter belongs to an optional stroke part that
# the style noise grows out of (or shrinks back into) its anchor. Unit coordinates: the digit spans
# y in [-0.5, 0.5] (y points down, like image rows), x roughly [-0.33, 0.33].
Point = tuple[float, ...]
Stroke = list[Point]


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int) -> Stroke:
    """n points on an ellipse arc; with y down, 90 degrees is the bottom of the ellipse."""
    angles = [math.radians(start_deg + (end_deg - start_deg) * i / (n - 1)) for i in range(n)]
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# One skeleton per digit, drawn the way MNIST writers usually do. Strokes that must join share a point
# exactly: the jitter is a smooth field of position, so shared points move together and joins never open.
SKELETONS: dict[int, list[Stroke]] = {
    0: [_arc(0.0, 0.0, 0.29, 0.48, -100.0, 260.0, 14)],
    1: [
        [(0.07, -0.5), (-0.05, 0.5)],
        [(-0.14, -0.32, 0.07, -0.5), (0.07, -0.5)],
    ],
    2: [_arc(0.0, -0.22, 0.27, 0.26, 195.0, 385.0, 8) + [(-0.28, 0.47), (0.32, 0.47)]],
    3: [_arc(-0.01, -0.25, 0.24, 0.23, 200.0, 470.0, 9), _arc(0.0, 0.235, 0.28, 0.255, 250.0, 520.0, 9)],
    4: [
        [(-0.17, -0.5, 0.17, -0.45), (-0.3, 0.12), (0.33, 0.12)],
        [(0.17, -0.45), (0.15, 0.5)],
    ],
    5: [[(0.3, -0.48), (-0.15, -0.48)] + _arc(0.0, 0.2, 0.28, 0.27, 235.0, 515.0, 9)],
    6: [[(0.2, -0.5), (0.0, -0.36), (-0.16, -0.15)] + _arc(0.0, 0.22, 0.26, 0.26, 200.0, -160.0, 12)],
    7: [
        [(-0.3, -0.46), (0.3, -0.46), (-0.04, 0.5)],
        [(-0.02, 0.02, 0.13, 0.02), (0.28, 0.02, 0.13, 0.02)],
    ],
    8: [_arc(0.0, -0.25, 0.21, 0.23, -90.0, 270.0, 10), _arc(0.0, 0.24, 0.27, 0.25, -90.0, 270.0, 11)],
    9: [_arc(0.0, -0.22, 0.25, 0.25, 0.0, 360.0, 11) + [(0.22, 0.1), (0.13, 0.5)]],
}
# How rare each digit's optional part is: presence = sigmoid(STYLE_GAIN * (z7 - bias)).
STYLE_BIAS = (0.0, -0.6, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0)

# Pose ranges in pixels of a 32x32 image (scaled with image_size); _fit keeps the extreme corners in frame.
SHAPE_CONSTANTS = {
    "shift_px": 1.5,
    "rotation_rad": 0.17,
    "height_px": 20.0,
    "height_range_px": 1.5,
    "width_range": 0.12,
    "slant": 0.22,
    "radius_px": 1.85,
    "radius_range_px": 0.45,
    "style_gain": 2.5,
    "jitter": 0.08,  # unit (digit-height) coordinates
    "jitter_frequency": 3.0,  # rad per unit: deformations a bit shorter than the digit
}
EDGE_PX = 1.0  # anti-aliasing band; stays one pixel at any image size
JITTER_DIMS = 8
JITTER_SEED = 20210412
COLOUR_SEED = 20210413  # the colours of classes past the ten of the palettes
DIGITS = 10
COLOUR_SCALE = 0.9  # leaves 0.1 of headroom for the patterns, so nothing needs clipping
# Low frequencies (0.5 to 2.5 cycles per image): the real CGN-MNIST texture heads are nearly constant per class.
TEXTURE_CONSTANTS = {"freq_min": 0.5, "freq_range": 2.0, "amp": 0.07, "amp_range": 0.03}
BACKGROUND_CONSTANTS = {"amp": 0.1, "blob_sigma": 0.6, "blob_reach": 0.7}
# Samples per distance-field chunk: keeps the (chunk, segments, H, W) work tensors cache-sized.
SHAPE_CHUNK_PIXELS = 1 << 20
PATTERN_CHUNK = 1024


class _Skeleton:
    """One digit's skeleton as tensors: points, their anchors, segment index pairs and jitter matrices."""

    def __init__(self, strokes: Sequence[Stroke], generator: torch.Generator) -> None:
        points, anchors, segments = [], [], []
        for stroke in strokes:
            first = len(points)
            for p in stroke:
                points.append(p[:2])
                anchors.append(p[2:] if len(p) == 4 else p[:2])
            segments += [(i, i + 1) for i in range(first, len(points) - 1)]
        self.points = torch.tensor(points, dtype=torch.float32)
        self.anchors = torch.tensor(anchors, dtype=torch.float32)
        self.segments = torch.tensor(segments, dtype=torch.long)
        self.is_optional = (self.points != self.anchors).any(1)
        field = _random_field(generator)
        self.jitter_points = field(self.points)
        self.jitter_anchors = field(self.anchors)

    def to(self, device: torch.device) -> "_Skeleton":
        for name in ("points", "anchors", "segments", "is_optional", "jitter_points", "jitter_anchors"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def num_parameters(self) -> int:
        """Point coordinates and jitter rows; anchors only count where they differ from their point."""
        optional = self.is_optional
        own = self.points.numel() + self.jitter_points.numel()
        return own + self.anchors[optional].numel() + self.jitter_anchors[optional].numel()


def _random_field(generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fixed random smooth vector field: points (P, 2) -> projection matrix (P, 2, JITTER_DIMS).

    Each noise dimension drives one low-frequency sine mode per axis. Displacing points by a smooth field of
    their position (rather than independent per-point noise) bends strokes instead of making them ragged.
    """
    freq = torch.randn(2, JITTER_DIMS, 2, generator=generator) * SHAPE_CONSTANTS["jitter_frequency"]
    phase = torch.rand(2, JITTER_DIMS, generator=generator) * (2 * math.pi)
    # sum_k z_k sin(.) has variance ~ JITTER_DIMS / 2; normalise it to ~1 so tanh below stays mostly linear.
    gain = math.sqrt(2.0 / JITTER_DIMS)

    def field(points: torch.Tensor) -> torch.Tensor:
        return gain * torch.sin(torch.einsum("pc,akc->pak", points, freq) + phase)

    return field


def _sigmoid(x: torch.Tensor) -> torch.Tensor:
    # torch.sigmoid's vectorised and scalar kernels differ in the last bit, which would make a sample depend
    # on its batch; tanh's agree.
    return 0.5 + 0.5 * torch.tanh(0.5 * x)


def _class_colours(palette: tuple, num_classes: int, stream: int) -> torch.Tensor:
    """(num_classes, 3) colours in [-1, 1] (times COLOUR_SCALE): the palette's, then seeded ones for classes past
    it; `stream` keeps foreground and background draws apart."""
    colours = as_unit_range(palette)[:num_classes]
    extra = num_classes - len(colours)
    if extra > 0:
        generator = torch.Generator().manual_seed(COLOUR_SEED + stream)
        colours = torch.cat([colours, torch.rand(extra, 3, generator=generator) * 2 - 1])
    return colours * COLOUR_SCALE


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class SyntheticTeacher(Teacher):
    """Procedural double-coloured digits: shape = soft stroke mask, texture/background = palette + pattern."""

    kind = "synthetic"
    draws_digits = True

    def __init__(self, settings: SyntheticSettings = SyntheticSettings()) -> None:
        self.image_size = size = settings.image_size
        self.num_classes = settings.num_classes
        self.mirrors = "double_colored" if self.num_classes == DIGITS else None
        self.z_dims = {"shape": 16, "texture": 8, "background": 8}
        generator = torch.Generator().manual_seed(JITTER_SEED)
        self._skeletons = [_Skeleton(SKELETONS[d], generator) for d in range(DIGITS)]
        self._foreground = _class_colours(FOREGROUND_RGB, self.num_classes, 0)
        self._background = _class_colours(BACKGROUND_RGB, self.num_classes, 1)
        # Pixel centres, in pixels from the image centre (shape) and in [-1, 1] (patterns).
        self._grid_px = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
        self._grid_unit = self._grid_px * (2.0 / size)

    def to(self, device: torch.device | str) -> "SyntheticTeacher":
        device = torch.device(device)
        self._skeletons = [skeleton.to(device) for skeleton in self._skeletons]
        for name in ("_foreground", "_background", "_grid_px", "_grid_unit"):
            setattr(self, name, getattr(self, name).to(device))
        return super().to(device)

    def num_parameters(self, im: str) -> int:
        if im == "shape":
            skeletons = sum(s.num_parameters() for s in self._skeletons)
            return skeletons + len(STYLE_BIAS) + len(SHAPE_CONSTANTS) + 1
        if im == "texture":
            return self._foreground.numel() + len(TEXTURE_CONSTANTS) + 1
        if im == "background":
            return self._background.numel() + len(BACKGROUND_CONSTANTS) + 1
        raise ValueError(f"unknown mechanism {im!r}; allowed: {', '.join(self.z_dims)}")

    def _render(self, im: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if im == "shape":
            return self._shape(z, y)
        if im == "texture":
            return self._chunked(self._texture, z, y)
        return self._chunked(self._backdrop, z, y)

    # ---- shape ----------------------------------------------------------------------------------------

    def _shape(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        out = torch.zeros(len(z), 1, size, size, device=z.device)
        # Grouping by digit lets each use only its own segments instead of padding to the longest one.
        for digit, skeleton in enumerate(self._skeletons):
            idx = (y % DIGITS == digit).nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            points, radius = self._pose(skeleton, digit, z[idx])
            chunk = max(1, SHAPE_CHUNK_PIXELS // (len(skeleton.segments) * size * size))
            masks = [
                self._draw(points[i : i + chunk], skeleton.segments, radius[i : i + chunk])
                for i in range(0, len(idx), chunk)
            ]
            out[idx] = torch.cat(masks)[:, None]
        return out

    def _pose(self, skeleton: _Skeleton, digit: int, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Skeleton points in pixels from the image centre (B, P, 2), and stroke radii (B,)."""
        k = SHAPE_CONSTANTS
        unit = self.image_size / 32
        t = torch.tanh(z[:, :7])
        presence = _sigmoid(k["style_gain"] * (z[:, 7] - STYLE_BIAS[digit]))[:, None, None]
        points = skeleton.anchors + presence * (skeleton.points - skeleton.anchors)
        jitter = skeleton.jitter_anchors + presence[..., None] * (skeleton.jitter_points - skeleton.jitter_anchors)
        points = points + k["jitter"] * torch.tanh((jitter * z[:, None, None, 8:]).sum(-1))

        height = unit * (k["height_px"] + k["height_range_px"] * t[:, 3])
        width = height * (1 + k["width_range"] * t[:, 4])
        slant = k["slant"] * t[:, 5]
        px, py = points.unbind(-1)
        # Shear about the digit's middle row: positive slant leans the top to the right, like italics.
        x = width[:, None] * px - (height * slant)[:, None] * py
        y = height[:, None] * py
        angle = k["rotation_rad"] * t[:, 2]
        cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
        posed = torch.stack((cos * x - sin * y, sin * x + cos * y), -1)
        radius = unit * (k["radius_px"] + k["radius_range_px"] * t[:, 6])
        return self._fit(posed, radius, unit * k["shift_px"] * t[:, :2]), radius

    def _fit(self, posed: torch.Tensor, radius: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Shift the digit, keeping it and its soft edge off the outermost pixels.

        Only rare corners of z space (several saturated tanh at once) reach this limit; there the digit shrinks
        and its shift is cut to the free room. min/max keep it continuous, so nearby z still give nearby masks.
        Segments lie between their end points, so checking the points bounds the whole stroke.
        """
        # Farthest a point may be from the centre; the 0.01 px absorbs rounding in the distance field.
        allowed = self.image_size / 2 - 0.5 - EDGE_PX / 2 - 0.01 - radius
        reach = posed.abs().amax(1)  # (B, 2)
        shrink = (allowed / reach.amax(1)).clamp(max=1.0)
        room = (allowed[:, None] - reach * shrink[:, None]).clamp(min=0.0)
        shift = torch.maximum(torch.minimum(shift, room), -room)
        return posed * shrink[:, None, None] + shift[:, None, :]

    def _draw(self, points: torch.Tensor, segments: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Soft masks (B, H, W): a one-pixel smoothstep edge around the distance to the nearest segment."""
        start = points[:, segments[:, 0]]
        along = points[:, segments[:, 1]] - start
        length = along.norm(dim=-1)
        # A retracted optional stroke has zero length: it is a disc, so any unit direction measures it right.
        degenerate = length < 1e-6
        ux = torch.where(degenerate, 1.0, along[..., 0] / length.clamp_min(1e-6))
        uy = torch.where(degenerate, 0.0, along[..., 1] / length.clamp_min(1e-6))
        length = length.masked_fill(degenerate, 0.0)
        ax, ay = start.unbind(-1)
        dx = self._grid_px - ax[..., None]  # (B, S, W): columns
        dy = self._grid_px - ay[..., None]  # (B, S, H): rows
        # Distances separate into a term per row plus a term per column, so only the sums are full-size.
        s = (dx * ux[..., None])[:, :, None, :] + (dy * uy[..., None])[:, :, :, None]
        # How far the pixel's foot point falls outside the segment, along it (0 when it falls on it).
        beyond = s - s.clamp(min=torch.zeros_like(length)[..., None, None], max=length[..., None, None])
        perp = (dx * uy[..., None])[:, :, None, :] - (dy * ux[..., None])[:, :, :, None]
        d2 = perp.mul_(perp).addcmul_(beyond, beyond).amin(1)
        inside = radius[:, None, None] + EDGE_PX / 2 - d2.sqrt()
        return _smoothstep(inside / EDGE_PX)

    # ---- texture and background -------------------------------------------------------------------------

    def _chunked(self, fn: Callable, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bound peak memory at large image sizes; each sample is computed independently anyway."""
        out = torch.empty(len(z), 3, self.image_size, self.image_size, device=z.device)
        for i in range(0, len(z), PATTERN_CHUNK):
            out[i : i + PATTERN_CHUNK] = fn(z[i : i + PATTERN_CHUNK], y[i : i + PATTERN_CHUNK])
        return out

    def _texture(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = TEXTURE_CONSTANTS
        t = torch.tanh(z)
        amplitude = k["amp"] + k["amp_range"] * t[:, 7]
        mix = _sigmoid(z[:, 6])
        pattern = self._wave(t[:, 0:3], amplitude * mix) + self._wave(t[:, 3:6], amplitude * (1 - mix))
        return self._foreground[y][:, :, None, None] + pattern[:, None]

    def _wave(self, t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """weight * oriented stripes (B, H, W) from tanh'd (angle, frequency, phase).

        sin(row + col) = sin(row) cos(col) + cos(row) sin(col): the trigonometry runs on (B, H) and (B, W)
        only, and the full-size work is two outer products.
        """
        k = TEXTURE_CONSTANTS
        angle = (math.pi / 2) * t[:, 0]
        # Frequency in cycles across the image, whatever its pixel size.
        omega = math.pi * (k["freq_min"] + k["freq_range"] * (t[:, 1] + 1) / 2)
        phase = math.pi * t[:, 2]
        g = self._grid_unit
        cols = (omega * torch.cos(angle))[:, None] * g + phase[:, None]
        rows = (omega * torch.sin(angle))[:, None] * g
        w = weight[:, None]
        sin_part = (w * rows.sin())[:, :, None] * cols.cos()[:, None, :]
        return sin_part.addcmul_((w * rows.cos())[:, :, None], cols.sin()[:, None, :])

    def _backdrop(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k = BACKGROUND_CONSTANTS
        t = torch.tanh(z)
        g = self._grid_unit
        gradient = 0.5 * ((t[:, 1:2] * g)[:, :, None] + (t[:, 0:1] * g)[:, None, :])
        pattern = gradient + self._blob(t[:, 2:4], t[:, 6]) + self._blob(t[:, 4:6], t[:, 7])
        # Each of the three terms lies in [-1, 1]; averaging keeps the total there.
        return self._background[y][:, :, None, None] + (k["amp"] / 3 * pattern)[:, None]

    def _blob(self, centre: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """A signed Gaussian bump (B, H, W); separable, so built as an outer product of rows and columns."""
        k = BACKGROUND_CONSTANTS
        g = self._grid_unit
        cx, cy = (k["blob_reach"] * centre).unbind(-1)
        cols = torch.exp(-(((g - cx[:, None]) / k["blob_sigma"]) ** 2))
        rows = torch.exp(-(((g - cy[:, None]) / k["blob_sigma"]) ** 2)) * strength[:, None]
        return rows[:, :, None] * cols[:, None, :]
