"""Stage distill@<im>: train the student of one mechanism on its teacher samples.

Writes the student checkpoint, a DVCLive directory (training curves, held-out fidelity next to the trivial
per-class-mean baseline, parameter counts) and a teacher-over-student grid of held-out samples. A killed run
resumes from its last checkpoint when params, teacher samples and code are unchanged (`SKDCGN_RESUME=0`: start
afresh); a diverging one stops with exit 1, naming the step and keeping that checkpoint.
`SKDCGN_PROCESSES=N` trains on N data-parallel processes through torchrun (README: several GPUs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from dvclive import Live

from pipeline.common import (DATA, RESUME_DIR, exit_on_error, may_resume, partial_path, resume_key, setup_torch,
                             stage_args, staging, under_torchrun)
from skdcgn.distributed import barrier, init_from_environment, rank_and_world
from skdcgn.metrics import HEADLINE, fidelity, steps_to_gain
from skdcgn.grids import save_grid
from skdcgn.hashing import file_sha256
from skdcgn.seeds import stream_seed
from skdcgn.shards import decode_images, load_dataset, read_meta
from skdcgn.students import ProjectionDiscriminator, StudentGenerator, count_parameters, save_student
from skdcgn.teachers.base import CHANNELS, VALUE_RANGE
from skdcgn.streaming import StreamedSamples
from skdcgn.train import PairedSamples, TrainingData, TrainingDiverged, TrainSettings, distill, predict

GRID_SAMPLES = 20


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
    info = read_meta(source / "train")["info"]
    teacher = info["teacher"]
    train = training_samples(source / "train", settings, device)
    heldout = PairedSamples.from_dataset(load_dataset(source / "heldout"), device)

    torch.manual_seed(stream_seed(params.seed, "distill", im))
    student = StudentGenerator(im, teacher["z_dims"][im], teacher["num_classes"], teacher["image_size"],
                               settings.student_widths).to(device)
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
            live.summary["baseline"] = class_mean_baseline(im, train, heldout)
            headline = HEADLINE[im]
            curve = [(step, metrics[headline]) for step, metrics in callback.evals]
            live.summary["steps_to_95pct_gain"] = steps_to_gain(curve, live.summary["baseline"][headline])
            live.summary["parameters"] = {"student": count_parameters(student),
                                          "teacher": info["teacher_parameters"]}
        save_student(out / "student.pt", student.cpu(), teacher)
        save_teacher_student_grid(out / "grid.png", student, heldout)


def training_samples(directory: Path, settings: TrainSettings, device: torch.device) -> TrainingData:
    if settings.data == "stream":
        with exit_on_error():
            return StreamedSamples(directory, device, settings.loader_workers, settings.shuffle_buffer)
    return PairedSamples.from_dataset(load_dataset(directory), device)


def class_mean_baseline(im: str, train: TrainingData, heldout: PairedSamples) -> dict[str, float]:
    """Fidelity of predicting each class's mean teacher image: what a lookup table reaches without learning."""
    means = decode_images(train.class_mean_images().cpu(), train.value_range)
    target = decode_images(heldout.images.cpu(), heldout.value_range)
    return fidelity(im, means[heldout.y.cpu()], target)


def save_teacher_student_grid(path: Path, student: StudentGenerator, heldout: PairedSamples) -> None:
    # Two samples per class: the row pair shows what the student gets right and where it blurs.
    index = torch.cat([torch.nonzero(heldout.y.cpu() == c)[:2, 0] for c in range(student.num_classes)])
    z, y, teacher_images = heldout.batch(index[:GRID_SAMPLES].to(heldout.y.device))
    student_images = predict(student.eval(), z.cpu(), y.cpu())
    save_grid(path, [teacher_images.cpu(), student_images], VALUE_RANGE[student.config["im"]])


if __name__ == "__main__":
    main()
