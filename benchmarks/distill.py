"""Distill: training samples/s of the stage's path (teacher shards read through WebDataset, validated, decoded,
then trained on) against the same training fed from tensors already in memory.

With `train.data: memory` (the default) the stage holds the dataset after reading it once, so the ratio is the
cost of that read spread over the IM's training steps; with `--set train.data=stream` it is the cost of
streaming (loader workers decoding beside the training process). Goal (issue 4): >= 0.95. Usage: python -m benchmarks.distill [--im shape]
[--steps N] [--profile ... --set ...]; samples are generated first into a scratch folder at params' sizes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch

from benchmarks.common import arguments, best_seconds, report, setup
from pipeline.common import teacher_from
from pipeline.distill import training_samples
from skdcgn import IMS
from skdcgn.generate import generate_samples
from skdcgn.shards import load_dataset
from skdcgn.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.teachers.base import CHANNELS
from skdcgn.train import PairedSamples, TrainingData, distill


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--im", choices=IMS, default="shape")
    parser.add_argument("--steps", type=int, help="training steps (default: the IM's steps in params)")
    args = parser.parse_args()
    params, device = setup(args)
    teacher = teacher_from(params)
    settings = params.train_for(args.im)
    steps = args.steps or settings.steps
    settings = dataclasses.replace(settings, steps=steps, eval_every=steps + 1)  # no held-out evaluation mid-run
    with tempfile.TemporaryDirectory() as scratch:
        for split, per_class in (("train", params.generate.per_class), ("heldout", params.generate.heldout_per_class)):
            generate_samples(teacher, args.im, Path(scratch) / split, per_class, torch.Generator().manual_seed(0),
                             params.generate.shard_size, params.generate.batch_size)

        def read() -> list[TrainingData]:
            """What the stage does before training: validate the shards; decode and hold the held-out set, and
            the training set too unless it is streamed."""
            return [training_samples(Path(scratch) / "train", settings, device),
                    PairedSamples.from_dataset(load_dataset(Path(scratch) / "heldout"), device)]

        in_memory = [PairedSamples.from_dataset(load_dataset(Path(scratch) / split), device)
                     for split in ("train", "heldout")]

        def train(samples: list[TrainingData]) -> None:
            torch.manual_seed(0)
            student = StudentGenerator(args.im, teacher.z_dims[args.im], teacher.num_classes, teacher.image_size,
                                       settings.student_widths).to(device)
            disc = ProjectionDiscriminator(CHANNELS[args.im], teacher.num_classes, settings.disc_widths).to(device)
            distill(student, disc, *samples, params.loss, settings, seed=0)

        samples = steps * settings.batch_size
        rates = {"from shards": samples / best_seconds(lambda: train(read()), device, args.repeats),
                 "in memory": samples / best_seconds(lambda: train(in_memory), device, args.repeats)}
    report(f"distill {args.im} ({steps:,} steps of {settings.batch_size}, {settings.data}, "
           f"{params.generate.per_class * teacher.num_classes:,} samples)", rates, ("from shards", "in memory"),
           "samples/s")


if __name__ == "__main__":
    main()
