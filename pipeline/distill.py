"""Stage distill@<im>: train the student of one mechanism on its teacher samples, on the stage's device.

Writes the student checkpoint (data/students/<im>, DVC-cached) and, where git tracks them (data/metrics/
students/<im>), a DVCLive directory (training curves, held-out fidelity next to the trivial per-class-mean
baseline, parameter counts) and a teacher-over-student grid of held-out samples. A killed run
resumes from its last checkpoint when params, teacher samples and code are unchanged (`SKDCGN_RESUME=0`: start
afresh); a diverging one stops with exit 1, naming the step and keeping that checkpoint.
`SKDCGN_PROCESSES=N` trains on N data-parallel processes through torchrun (README: several GPUs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from dvclive import Live

from pipeline.common import (DATA, RESUME_DIR, SHOWN, exit_on_error, may_resume, resume_key, setup_torch, stage_args,
                             staging, under_torchrun)
from skdcgn.distillation.checkpoints import save_student
from skdcgn.distillation.data import training_data
from skdcgn.distillation.heldout import ShardSamples, baseline_fidelity, grid_samples
from skdcgn.distillation.loop import distill
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator, count_parameters
from skdcgn.mechanisms import CHANNELS, VALUE_RANGE
from skdcgn.metrics.convergence import steps_to_gain
from skdcgn.metrics.fidelity import HEADLINE
from skdcgn.shards.format import decode_images
from skdcgn.shards.reading import open_dataset
from skdcgn.training.distributed import barrier, init_from_environment, rank_and_world
from skdcgn.training.divergence import TrainingDiverged
from skdcgn.utils.atomic import atomic_directory, partial_path
from skdcgn.utils.grids import save_grid
from skdcgn.utils.hashing import file_sha256
from skdcgn.utils.seeds import stream_seed

GRID_PER_CLASS, GRID_SAMPLES = 2, 20


class LiveCallback:
    """Routes the training loop's reports into DVCLive; the library itself never imports dvclive."""

    def __init__(self, live: Live):
        self.live = live
        self.evals: list[tuple[int, dict[str, float]]] = []

    def on_log(self, step: int, values: dict[str, float]) -> None:
        self._log(step, {f"train/{name}": value for name, value in values.items()})

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.evals.append((step, metrics))
        self._log(step, {f"heldout/{name}": value for name, value in metrics.items()})

    def _log(self, step: int, values: dict[str, float]) -> None:
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)


def main() -> None:
    params, im = stage_args(with_im=True)
    settings = params.train_for(im)
    under_torchrun("pipeline.distill", settings.batch_size)
    device = init_from_environment(setup_torch())
    source = DATA / "teacher" / im
    train_set, heldout_set = open_dataset(source / "train"), open_dataset(source / "heldout")
    teacher = train_set.info["teacher"]
    with exit_on_error():
        train = training_data(train_set, settings, device)
    heldout = ShardSamples(heldout_set, device)

    torch.manual_seed(stream_seed(params.seed, "distill", im))
    student = StudentGenerator(im, teacher["z_dims"][im], teacher["num_classes"], teacher["image_size"],
                               settings.student_widths, settings.class_embedding).to(device)
    disc = ProjectionDiscriminator(CHANNELS[im], teacher["num_classes"], settings.disc_widths).to(device)
    leader = rank_and_world()[0] == 0

    def run(out: Path, callback: LiveCallback | None) -> None:
        try:
            distill(student, disc, train, heldout, params.loss, settings, stream_seed(params.seed, "batches", im),
                    callback, checkpoint=out / RESUME_DIR / "training.pt")
        except TrainingDiverged as error:
            if leader:
                print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None

    if not leader:
        barrier()  # rank 0 has prepared the partial output: a resumed run's checkpoint is there to read
        run(partial_path(DATA / "students" / im), None)
        return
    key = resume_key("distill", im, params.seed, params.loss, settings,
                     *(file_sha256(source / split / "shards.parquet") for split in ("train", "heldout")))
    with staging(DATA / "students" / im, key, may_resume(default=True)) as out:
        barrier()
        with Live(str(out / "live"), dvcyaml=False, save_dvc_exp=False) as live:
            callback = LiveCallback(live)
            run(out, callback)
            live.summary["baseline"] = baseline = baseline_fidelity(im, train.class_mean_images(), heldout)
            curve = [(step, metrics[HEADLINE[im]]) for step, metrics in callback.evals]
            live.summary["steps_to_95pct_gain"] = steps_to_gain(curve, baseline[HEADLINE[im]])
            live.summary["parameters"] = {"student": count_parameters(student),
                                          "teacher": train_set.info["teacher_parameters"]}
        # The curves, metrics and grid go where git tracks them; the student stays in the DVC cache.
        with atomic_directory(SHOWN / "students" / im) as shown:
            (out / "live").rename(shown / "live")
            save_teacher_student_grid(shown / "grid.png", student, heldout)
        save_student(out / "student.pt", student.cpu(), teacher)


@torch.no_grad()
def save_teacher_student_grid(path: Path, student: StudentGenerator, heldout: ShardSamples) -> None:
    """Teacher over student, two held-out samples per class: what the student gets right and where it blurs."""
    z, y, images = grid_samples(heldout, GRID_PER_CLASS, GRID_SAMPLES)
    im = student.config["im"]
    save_grid(path, [decode_images(images, VALUE_RANGE[im]).cpu(), student.eval()(z, y).float().cpu()],
              VALUE_RANGE[im])


if __name__ == "__main__":
    main()
