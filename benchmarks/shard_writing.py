"""Shard writing: samples/s of the generate stage's path against the teacher's raw forward passes alone.

Both use the same device, batch size and inputs; the difference is the cost of image encoding, tar and manifest
writing (and class sums) that the stage's writer processes (SKDCGN_WRITERS, default 1) do not hide behind the
teacher. Goal: >= 0.9. Usage: python -m benchmarks.shard_writing [--profile ... --set ...]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.common import arguments, best_seconds, report, setup, teacher_on
from pipeline.common import shard_writers
from skdcgn.mechanisms import IMS
from skdcgn.teachers.sampling import class_balanced_labels, sample_teacher, storage_codec


def main() -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    params, device = setup(args)
    teacher = teacher_on(params, device)
    settings = params.generate
    writers = shard_writers()
    labels = class_balanced_labels(settings.per_class, teacher.num_classes)
    for im in IMS:
        noise = torch.randn(len(labels), teacher.z_dims[im], generator=torch.Generator().manual_seed(0))
        codec = storage_codec(settings, im)

        def forward_only() -> None:
            for start in range(0, len(labels), settings.batch_size):
                teacher(im, noise[start:start + settings.batch_size], labels[start:start + settings.batch_size])

        with tempfile.TemporaryDirectory() as scratch:
            def stage() -> None:
                sample_teacher(teacher, im, Path(scratch) / "train", settings.per_class,
                               torch.Generator().manual_seed(0), settings, writers=writers)

            rates = {"generate": len(labels) / best_seconds(stage, device, args.repeats),
                     "teacher forward": len(labels) / best_seconds(forward_only, device, args.repeats)}
            stored = sum(path.stat().st_size for path in (Path(scratch) / "train").glob("*.tar"))
        report(f"generate {im} ({len(labels):,} samples, batch {settings.batch_size}, {writers} writer(s), "
               f"{codec.format}: {stored / len(labels):,.0f} shard bytes/sample)", rates,
               ("generate", "teacher forward"), "samples/s")


if __name__ == "__main__":
    main()
