"""Training input: samples/s of the distill stage's path (teacher shards opened and validated, decoded, then
trained on) against the same training fed from tensors already in memory.

With `train.data: memory` (the default) the stage holds the dataset after reading it once, so the ratio is the
cost of that read spread over the IM's training steps; with `--set train.data=stream` it is the cost of
streaming (loader workers decoding beside the training process). Goal: >= 0.95. Usage:
python -m benchmarks.training_input [--im shape] [--steps N] [--profile ... --set ...]; samples are generated
first into a scratch folder at params' sizes.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import torch

from benchmarks.common import arguments, best_seconds, report, setup, teacher_on
from skdcgn.distillation.data import PairedSamples, training_data
from skdcgn.distillation.heldout import ShardSamples
from skdcgn.distillation.loop import distill
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.mechanisms import CHANNELS, IMS
from skdcgn.shards.reading import open_dataset
from skdcgn.teachers.sampling import sample_teacher


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--im", choices=IMS, default="shape")
    parser.add_argument("--steps", type=int, help="training steps (default: the IM's steps in params)")
    args = parser.parse_args()
    params, device = setup(args)
    teacher = teacher_on(params, device)
    settings = params.train_for(args.im)
    steps = args.steps or settings.steps
    settings = settings.model_copy(update={"steps": steps, "eval_every": steps + 1})  # no mid-run evaluation
    with tempfile.TemporaryDirectory() as scratch:
        for split, per_class in (("train", params.generate.per_class), ("heldout", params.generate.heldout_per_class)):
            sample_teacher(teacher, args.im, Path(scratch) / split, per_class, torch.Generator().manual_seed(0),
                           params.generate)

        def read() -> list:
            """What the stage does before training: open (validate) both sets, and decode and hold the training
            set unless it is streamed; the held-out set is read at each evaluation."""
            return [training_data(open_dataset(Path(scratch) / "train"), settings, device),
                    ShardSamples(open_dataset(Path(scratch) / "heldout"), device)]

        with contextlib.redirect_stdout(io.StringIO()):  # the stage's progress lines; only results are printed
            in_memory = [PairedSamples.from_dataset(open_dataset(Path(scratch) / split), device)
                         for split in ("train", "heldout")]

        def train(samples: list) -> None:
            torch.manual_seed(0)
            student = StudentGenerator(args.im, teacher.z_dims[args.im], teacher.num_classes, teacher.image_size,
                                       settings.student_widths, settings.class_embedding).to(device)
            disc = ProjectionDiscriminator(CHANNELS[args.im], teacher.num_classes, settings.disc_widths).to(device)
            distill(student, disc, *samples, params.loss_for(args.im), settings, seed=0)

        samples = steps * settings.batch_size
        rates = {"from shards": samples / best_seconds(lambda: train(read()), device, args.repeats),
                 "in memory": samples / best_seconds(lambda: train(in_memory), device, args.repeats)}
    report(f"distill {args.im} ({steps:,} steps of {settings.batch_size}, {settings.data}, "
           f"{params.generate.per_class * teacher.num_classes:,} samples)", rates, ("from shards", "in memory"),
           "samples/s")


if __name__ == "__main__":
    main()
