"""Stage distill@<im>: train the student of one mechanism on its teacher samples, on the stage's device.

Writes the student checkpoint and its model card (data/students/<im>, DVC-cached) and, where git tracks them
(data/metrics/students/<im>): DVCLive's metrics.json (held-out fidelity from the first evaluation on; at the end
the trivial per-class-mean baseline, the same fidelity on as many training samples, and the parameter counts
beside them), the curves (fidelity.tsv: the headline
metric and the baseline per evaluation; losses.tsv) and a grid of held-out samples (the teacher's, then the
student's at 1/8, 1/4 and 1/2 of training and at the end). A killed run
resumes from its last checkpoint when params, teacher samples, code and the number of processes are unchanged
(`SKDCGN_RESUME=0`: start afresh); a diverging one stops with exit 1, naming the step and keeping that checkpoint.
`SKDCGN_PROCESSES=N` trains on N data-parallel processes through torchrun (docs/scale.md).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from dvclive import Live

from pipeline.common import (DATA, PROCESSES_ENV, RESUME_DIR, SHOWN, exit_on_error, may_resume, resume_key,
                             setup_torch, stage_args, staging, under_torchrun)
from pipeline.params import Params
from skdcgn.distillation.checkpoints import save_student
from skdcgn.distillation.data import training_data
from skdcgn.distillation.heldout import ShardSamples, baseline_fidelity, grid_samples, heldout_fidelity
from skdcgn.distillation.loop import distill
from skdcgn.distillation.model_card import model_card
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator, count_parameters
from skdcgn.mechanisms import CHANNELS, VALUE_RANGE
from skdcgn.metrics.convergence import steps_to_gain
from skdcgn.metrics.fidelity import HEADLINE
from skdcgn.settings.distill import LossSettings, TrainSettings
from skdcgn.shards.format import decode_images
from skdcgn.shards.reading import open_dataset
from skdcgn.training.distributed import barrier, init_from_environment, rank_and_world
from skdcgn.training.divergence import TrainingDiverged
from skdcgn.training.state import saved_identity
from skdcgn.utils.atomic import atomic_file, partial_path
from skdcgn.utils.grids import save_grid
from skdcgn.utils.hashing import file_sha256
from skdcgn.utils.seeds import stream_seed

GRID_PER_CLASS, GRID_SAMPLES = 2, 20
# grid.png: the teacher's held-out samples, then the student's images of them at the evaluation at or after each
# of these fractions of training, then at the end: what it learns first and where it still blurs.
GRID_AT = (0.125, 0.25, 0.5)


# The training losses drawn together in one plot (columns of losses.tsv, in this order); a part the objective
# does not compute (no discriminator in a pixel-only objective) is left empty.
LOSSES = ("generator", "pixel", "adversarial", "feature", "kl", "discriminator")


class LiveCallback:
    """Routes the training loop's reports into DVCLive (metrics.json, rewritten at every evaluation) and into
    the two curves `dvc plots show` draws per student, in the folder `curves`: the headline held-out fidelity
    next to the class-mean baseline (fidelity.tsv), and the losses together (losses.tsv). The library never
    imports dvclive."""

    def __init__(self, live: Live, curves: Path, headline: str, baseline: float, rows: "GridRows | None" = None):
        self.live, self.headline, self.baseline, self.rows = live, headline, baseline, rows
        self.evals: list[tuple[int, dict[str, float]]] = []
        self.fidelity, self.losses = curves / "fidelity.tsv", curves / "losses.tsv"
        curves.mkdir(parents=True, exist_ok=True)
        self.fidelity.write_text("step\tstudent\tbaseline\n")
        self.losses.write_text("\t".join(("step", *LOSSES)) + "\n")

    def on_log(self, step: int, values: dict[str, float]) -> None:
        self._log(step, {f"train/{name}": value for name, value in values.items()})
        _append(self.losses, [step, *(values.get(f"loss/{name}", "") for name in LOSSES)])

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.evals.append((step, metrics))
        self._log(step, {f"heldout/{name}": value for name, value in metrics.items()})
        _append(self.fidelity, [step, metrics[self.headline], self.baseline])
        if self.rows:
            self.rows.keep(step)
        # metrics.json at every evaluation, not only at the end: `dvc exp show` and `dvc metrics show` show a
        # running experiment's latest held-out fidelity, with its step.
        self.live.make_summary()

    def _log(self, step: int, values: dict[str, float]) -> None:
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value, plot=False)


class GridRows:
    """The student's images of the grid's held-out samples at the steps of GRID_AT, each kept as a file in the
    run's resume folder: a resumed run keeps those it inherits (they cannot be drawn again from a later state)."""

    def __init__(self, folder: Path, student: StudentGenerator, heldout: ShardSamples, settings: TrainSettings):
        self.folder, self.student = folder, student
        self.z, self.y, self.teacher = grid_samples(heldout, GRID_PER_CLASS, GRID_SAMPLES)
        every = settings.eval_every
        self.steps = {step for fraction in GRID_AT
                      if 0 < (step := math.ceil(fraction * settings.steps / every) * every) < settings.steps}
        folder.mkdir(parents=True, exist_ok=True)

    def keep(self, step: int) -> None:
        path = self.folder / f"grid-{step:08d}.pt"
        if step in self.steps and not path.exists():
            with atomic_file(path) as partial:  # whole or absent: a resumed run keeps a row that exists
                torch.save(self.draw(), partial)

    @torch.no_grad()
    def draw(self) -> torch.Tensor:
        was_training = self.student.training
        images = self.student.eval()(self.z, self.y).float().cpu()
        self.student.train(was_training)
        return images

    def save(self, path: Path) -> None:
        """Teacher, the kept rows in step order, the student now."""
        value_range = VALUE_RANGE[self.student.config["im"]]
        kept = [torch.load(row, weights_only=True) for row in sorted(self.folder.glob("grid-*.pt"))]
        save_grid(path, [decode_images(self.teacher, value_range).cpu(), *kept, self.draw()], value_range)


def _append(path: Path, row: list) -> None:
    with path.open("a") as table:
        table.write("\t".join(map(str, row)) + "\n")


def main() -> None:
    params, im = stage_args(with_im=True)
    settings, loss = params.train_for(im), params.loss_for(im)
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
    rank, processes = rank_and_world()
    leader = rank == 0

    def run(out: Path, callback: LiveCallback | None) -> None:
        try:
            distill(student, disc, train, heldout, loss, settings, stream_seed(params.seed, "batches", im),
                    callback, checkpoint=out / RESUME_DIR / "training.pt")
        except TrainingDiverged as error:
            if leader:
                print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None

    if not leader:
        barrier()  # rank 0 has prepared the partial output: a resumed run's checkpoint is there to read
        run(partial_path(DATA / "students" / im), None)
        return
    key = resume_key("distill", im, processes, params.seed, loss, settings,
                     *(file_sha256(source / split / "shards.parquet") for split in ("train", "heldout")))
    shown = SHOWN / "students" / im
    resume = may_resume(default=True)
    if resume:
        say_if_other_processes(partial_path(DATA / "students" / im) / RESUME_DIR, key, processes)
    with staging(DATA / "students" / im, key, resume) as out:
        barrier()
        # The curves and metrics go where git tracks them as they come (a resumed run replays the reports made
        # before its checkpoint, training.state); the student stays in the DVC cache.
        baseline = baseline_fidelity(im, train.class_mean_images(), heldout)
        rows = GridRows(out / RESUME_DIR / "grid", student, heldout, settings)
        with Live(str(shown / "live"), dvcyaml=False, save_dvc_exp=False) as live:
            callback = LiveCallback(live, shown, HEADLINE[im], baseline[HEADLINE[im]], rows)
            run(out, callback)
            live.summary["baseline"] = baseline
            curve = [(step, metrics[HEADLINE[im]]) for step, metrics in callback.evals]
            live.summary["steps_to_95pct_gain"] = steps_to_gain(curve, baseline[HEADLINE[im]])
            # The same measure on as many of the samples it trained on: the gap to `heldout` is what it
            # memorised rather than learned (the data-efficiency study).
            live.summary["train_samples"] = heldout_fidelity(
                student, ShardSamples(train_set, device, limit=heldout_set.num_samples))
            live.summary["parameters"] = parameters = {"student": count_parameters(student),
                                                       "teacher": train_set.info["teacher_parameters"]}
        training = training_summary(params, settings, loss, train_set.num_samples)
        card = model_card(student.config, teacher, (parameters["student"], parameters["teacher"]), training,
                          callback.evals[-1][1], baseline, HEADLINE[im])
        (out / "MODEL_CARD.md").write_text(card)
        with atomic_file(shown / "grid.png") as grid:
            rows.save(grid)
        save_student(out / "student.pt", student.cpu(), teacher)


def say_if_other_processes(resume_dir: Path, key: str, processes: int) -> None:
    """The number of processes is part of the resume key, as the bytes depend on it (BatchNorm statistics are
    per process): a killed run's checkpoint from another number is not resumed. Say why. A partial output of this
    very key is resumed: its checkpoint is read once, by the training, not here as well."""
    key_file = resume_dir / "key"
    if key_file.is_file() and key_file.read_text() == key:
        return
    saved = saved_identity(resume_dir / "training.pt").get("processes", processes)
    if saved != processes:
        print(f"starting afresh: the interrupted run trained on {saved} processes, this one on {processes} "
              f"({PROCESSES_ENV})", flush=True)


def training_summary(params: Params, settings: TrainSettings, loss: LossSettings, samples: int) -> dict:
    """What made the student, for its model card."""
    objective = ", ".join(f"{name} {value}" for name, value in loss.model_dump().items())
    return {"steps": settings.steps, "batch_size": settings.batch_size, "lr": settings.lr, "teacher samples": samples,
            "seed": params.seed, "objective": objective}


if __name__ == "__main__":
    main()
