"""ImageNet CGN: per mechanism, teacher against student images/s at 256x256 and 128x128 on one device, with
parameters and FLOPs per image.

The teacher is a full-size CGN in the released layout, loaded the way a user's `cgn.pth` is: that file with
`--checkpoint`, else one with random weights written to a temporary folder (speed does not depend on the
weights). The students are untrained, of the widths of profiles/cgn-imagenet.yaml and cgn-imagenet-128.yaml.
Both get the same truncated noise and classes in batches of `--batch` (several sizes: to see whether a small
batch leaves a GPU idle between a student's many small kernels). FLOPs are PyTorch's FlopCounterMode count
(2 x multiply-adds) of one batch.
Usage: python -m benchmarks.imagenet_speed [--checkpoint cgn.pth] [--batch 2 ...] [--repeats 1]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import arguments, best_seconds, report, setup
from pipeline.profile import overrides
from skdcgn.distillation.students import StudentGenerator, count_parameters
from skdcgn.mechanisms import IMS
from skdcgn.settings.teacher import CGNImageNetSettings
from skdcgn.teachers.base import Mechanism
from skdcgn.teachers.cgn_imagenet import NUM_CLASSES, Z_DIM, CGNImageNetNet, CGNImageNetTeacher
from skdcgn.teachers.noise import draw_noise

PROFILES = {256: "cgn-imagenet", 128: "cgn-imagenet-128"}


def random_checkpoint(path: Path) -> Path:
    """A full-size CGN in the released layout with random weights, written to `path`."""
    torch.manual_seed(0)
    torch.save(CGNImageNetNet().state_dict(), path)
    return path


def profile_student(im: str, size: int, z_dim: int = Z_DIM, num_classes: int = NUM_CLASSES) -> StudentGenerator:
    """An untrained student of `im` as profiles/cgn-imagenet[-128].yaml configure it (speed does not depend on
    the weights), for the released CGN's noise and classes unless told otherwise."""
    profile = overrides(PROFILES[size])
    return StudentGenerator(im, z_dim, num_classes, size, profile["train.student_widths"],
                            profile["train.class_embedding"])


def gflop(run: Mechanism, z: torch.Tensor, y: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run(z, y)
    return counter.get_total_flops() / len(y) / 1e9


def compare(size: int, checkpoint: Path, device: torch.device, batches: list[int], repeats: int) -> None:
    """One report per batch size and mechanism; the teacher (a full-size checkpoint) and students load once."""
    teacher = CGNImageNetTeacher(CGNImageNetSettings(checkpoint=str(checkpoint), image_size=size)).to(device)
    students = {im: profile_student(im, size, teacher.z_dims[im], teacher.num_classes).to(device).eval()
                for im in IMS}
    for batch in batches:
        z = draw_noise(batch, teacher.z_dims["texture"], torch.Generator().manual_seed(0), teacher.truncation)
        y = torch.arange(batch) % teacher.num_classes
        for im, student in students.items():
            runs = {"student": lambda z, y, s=student: s(z.to(device), y.to(device)),
                    "teacher": lambda z, y, im=im: teacher(im, z, y)}
            rates, sizes = {}, []
            for label, run in runs.items():
                with torch.no_grad():
                    rates[label] = batch / best_seconds(lambda: run(z, y), device, repeats)
                parameters = teacher.num_parameters(im) if label == "teacher" else count_parameters(student)
                sizes.append(f"{label} {parameters / 1e6:.2f} M parameters, {gflop(run, z, y):.2f} GFLOP/image")
            report(f"{size}x{size} {im} (batch {batch}; {'; '.join(sizes)})", rates, ("student", "teacher"),
                   "images/s")


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a cgn.pth (default: random weights, full size)")
    parser.add_argument("--batch", type=int, nargs="+", default=[2], help="images per forward, one report each")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 128], choices=sorted(PROFILES))
    parser.set_defaults(repeats=1)
    args = parser.parse_args()
    _, device = setup(args)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or random_checkpoint(Path(folder) / "cgn.pth")
        for size in args.sizes:
            compare(size, checkpoint, device, args.batch, args.repeats)


if __name__ == "__main__":
    main()
