import json
import math
import re
from pathlib import Path

import pytest
import torch
from dvclive import Live
from PIL import Image
from torch.optim.optimizer import register_optimizer_step_pre_hook

from pipeline.distill import GridRows, LiveCallback
from skdcgn.distillation.data import PairedSamples
from skdcgn.distillation.heldout import heldout_fidelity
from skdcgn.distillation.loop import distill
from skdcgn.distillation.losses import generator_loss
from skdcgn.distillation.students import ProjectionDiscriminator, StudentGenerator
from skdcgn.settings.distill import LossSettings, TrainSettings
from skdcgn.settings.teacher import SyntheticSettings
from skdcgn.shards.format import encode_images
from skdcgn.teachers.synthetic import SyntheticTeacher
from skdcgn.training.divergence import TrainingDiverged

# Whole training runs, resumed and diverging ones among them.
pytestmark = pytest.mark.slow

IM = "shape"


def teacher_samples(n: int, seed: int, device: torch.device | str = "cpu") -> PairedSamples:
    teacher = SyntheticTeacher()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, teacher.z_dims[IM], generator=generator)
    y = torch.arange(n) % 10
    pixels = torch.from_numpy(encode_images(teacher(IM, z, y), (0.0, 1.0))).permute(0, 3, 1, 2)
    return PairedSamples(z.to(device), y.to(device), pixels.to(device), (0.0, 1.0))


class Recorder:
    def __init__(self):
        self.logs, self.evals = [], []

    def on_log(self, step, values):
        self.logs.append((step, values))

    def on_eval(self, step, metrics):
        self.evals.append((step, metrics))


def train(steps: int, weights: LossSettings = LossSettings(), seed: int = 0, checkpoint=None, callback=None,
          device: torch.device | str = "cpu", **options):
    torch.manual_seed(seed)
    student = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]).to(device)
    disc = ProjectionDiscriminator(1, 10, [8, 16, 32]).to(device)
    recorder = callback or Recorder()
    settings = TrainSettings(**{"steps": steps, "batch_size": 32, "lr": 2e-3, "log_every": 10, "eval_every": 20,
                                **options})
    final = distill(student, disc, teacher_samples(320, 1, device), teacher_samples(100, 2, device), weights,
                    settings, seed, recorder, checkpoint)
    return student, final, recorder


def test_training_beats_the_untrained_student_on_heldout_masks():
    torch.manual_seed(0)
    untrained = heldout_fidelity(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    _, final, recorder = train(60)
    # 60 steps of a tiny student: too early for masks to cross 0.5 (IoU), not for L1 and structure (SSIM).
    assert final["l1"] < untrained["l1"] / 2
    assert final["ssim"] > untrained["ssim"] + 0.05
    # Logged every 10 steps with every loss part; held-out fidelity every 20 and at the end.
    assert [step for step, _ in recorder.logs] == [10, 20, 30, 40, 50, 60]
    assert {"loss/generator", "loss/discriminator", "loss/pixel", "loss/kl"} <= set(recorder.logs[0][1])
    assert [step for step, _ in recorder.evals] == [20, 40, 60] and recorder.evals[-1][1] == final


def test_every_evaluation_is_in_the_metrics_file_while_training_runs(tmp_path):
    """The live view: `dvc exp show` reads metrics.json, so it must hold each evaluation as it comes."""
    on_disk = []

    class Watching(LiveCallback):
        def on_eval(self, step, metrics):
            super().on_eval(step, metrics)
            on_disk.append(json.loads((tmp_path / "live" / "metrics.json").read_text()))

    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        callback = Watching(live, tmp_path, "mask_iou", 0.25)
        train(60, callback=callback)
    assert [summary["step"] for summary in on_disk] == [20, 40, 60]
    assert [summary["heldout"] for summary in on_disk] == [metrics for _, metrics in callback.evals]
    assert on_disk[0]["train"]["loss"]["generator"] > 0
    # The curves: the headline next to the baseline at each evaluation; every loss part at each log.
    fidelity = [line.split("\t") for line in (tmp_path / "fidelity.tsv").read_text().splitlines()]
    assert fidelity == [["step", "student", "baseline"]] + [
        [str(step), str(metrics["mask_iou"]), "0.25"] for step, metrics in callback.evals]
    losses = [line.split("\t") for line in (tmp_path / "losses.tsv").read_text().splitlines()]
    assert losses[0] == ["step", "generator", "pixel", "adversarial", "feature", "kl", "discriminator"]
    assert [row[0] for row in losses[1:]] == [str(step) for step in range(10, 61, 10)]
    assert all(float(value) == float(value) for row in losses[1:] for value in row)  # numbers, none missing


def test_same_seed_gives_bit_identical_students_on_cpu():
    first, _, _ = train(15)
    second, _, _ = train(15)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_pixel_only_objective_trains_without_a_discriminator():
    _, final, recorder = train(20, LossSettings(adversarial_weight=0, feature_weight=0, kl_weight=0))
    assert "loss/discriminator" not in recorder.logs[0][1]
    torch.manual_seed(0)
    untrained = heldout_fidelity(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    assert final["l1"] < untrained["l1"]


def test_too_few_samples_for_a_batch_is_refused():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        distill(StudentGenerator(IM, 16, 10, 32, [16, 16, 8, 8]), ProjectionDiscriminator(1, 10, [8, 8, 8]),
                teacher_samples(10, 1), teacher_samples(10, 2), LossSettings(), TrainSettings(steps=5, batch_size=32),
                0)


def gradient_norms_at_each_update(**train_options) -> list[float]:
    """Total gradient norm each optimizer (G and D) sees when it steps, over a short training run."""
    norms = []

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(10, **train_options)
    finally:
        handle.remove()
    return norms


def test_gradient_clipping_bounds_every_update():
    assert max(gradient_norms_at_each_update()) > 0.05  # unclipped, the gradients are larger than the bound
    clipped = gradient_norms_at_each_update(grad_clip=0.05)
    assert len(clipped) == 20 and max(clipped) <= 0.05 * (1 + 1e-4)


class Killed(Exception):
    """Stands in for kill -9 at a chosen step: the loop stops with no chance to tidy up."""


class KillAt(Recorder):
    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_log(self, step, values):
        super().on_log(step, values)
        if step == self.step:
            raise Killed


def train_with_grid(folder, checkpoint=None, kill_at=None) -> None:
    """60 steps through the stage's callback and grid rows (evaluations every 10 steps: rows at 10, 20, 30)."""
    torch.manual_seed(0)
    student = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8])
    disc = ProjectionDiscriminator(1, 10, [8, 16, 32])
    settings = TrainSettings(steps=60, batch_size=32, lr=2e-3, log_every=10, eval_every=10, checkpoint_every=20)
    heldout = teacher_samples(100, 2)
    rows = GridRows(folder / "rows", student, heldout, settings)

    class Stage(LiveCallback):
        def on_log(self, step, values):
            super().on_log(step, values)
            if step == kill_at:
                raise Killed

    with Live(str(folder / "live"), dvcyaml=False, save_dvc_exp=False) as live:
        callback = Stage(live, folder, "mask_iou", 0.0, rows)
        distill(student, disc, teacher_samples(320, 1), heldout, LossSettings(), settings, 0, callback, checkpoint)
    rows.save(folder / "grid.png")


def test_the_grid_shows_the_student_at_a_few_steps_even_across_a_resume(tmp_path):
    train_with_grid(tmp_path / "whole")
    assert sorted(p.name for p in (tmp_path / "whole/rows").iterdir()) == [
        "grid-00000010.pt", "grid-00000020.pt", "grid-00000030.pt"]
    # Teacher, three steps, the end: five rows of 32x32 cells, scaled 2x with 2-pixel gaps.
    assert Image.open(tmp_path / "whole/grid.png").height == 2 * (5 * (32 + 2) + 2)
    with pytest.raises(Killed):
        train_with_grid(tmp_path / "resumed", tmp_path / "training.pt", kill_at=50)
    train_with_grid(tmp_path / "resumed", tmp_path / "training.pt")  # from step 40: the rows before are kept
    assert (tmp_path / "resumed/grid.png").read_bytes() == (tmp_path / "whole/grid.png").read_bytes()


def test_a_grid_row_cut_off_while_written_is_never_taken_for_whole(tmp_path, monkeypatch):
    torch.manual_seed(0)
    student = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8])
    rows = GridRows(tmp_path, student, teacher_samples(100, 2), TrainSettings(steps=60, eval_every=10))
    step = min(rows.steps)
    row = tmp_path / f"grid-{step:08d}.pt"

    def killed_while_writing(value, path):
        Path(path).write_bytes(b"PK\x03\x04")  # the first bytes of torch.save's zip
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(torch, "save", killed_while_writing)
        with pytest.raises(Killed):
            rows.keep(step)
    assert not row.exists()
    rows.keep(step)  # as the resumed run does at that step
    assert torch.equal(torch.load(row, weights_only=True), rows.draw())


@pytest.mark.parametrize("weights", [LossSettings(), LossSettings(adversarial_weight=0, feature_weight=0)],
                         ids=["full-objective", "pixel-only"])
def test_a_resumed_run_is_bit_identical_to_one_never_stopped(tmp_path, weights):
    checkpoint = tmp_path / "training.pt"
    whole, whole_final, whole_log = train(60, weights, checkpoint_every=20)
    with pytest.raises(Killed):
        train(60, weights, checkpoint=checkpoint, callback=KillAt(50), checkpoint_every=20)
    assert torch.load(checkpoint, weights_only=True)["step"] == 40  # steps 41-50 are lost and trained again
    resumed, resumed_final, resumed_log = train(60, weights, checkpoint=checkpoint, checkpoint_every=20)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed_final == whole_final
    # The reports made before the checkpoint are replayed: the logs read as if the run had never stopped.
    assert resumed_log.logs == whole_log.logs and resumed_log.evals == whole_log.evals


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoint = tmp_path / "training.pt"
    with pytest.raises(Killed):
        train(40, checkpoint=checkpoint, callback=KillAt(30), checkpoint_every=10)
    with pytest.raises(ValueError, match="a checkpoint of another run .settings differ.; delete it"):
        train(40, checkpoint=checkpoint, lr=1e-3)


def test_a_non_finite_loss_stops_training_naming_the_step_and_keeping_the_last_good_checkpoint(tmp_path):
    checkpoint = tmp_path / "training.pt"
    with pytest.raises(TrainingDiverged) as error:
        # max_disc_logit 0: that check would stop this run first (the next test shows it).
        train(200, checkpoint=checkpoint, lr=1e10, log_every=1, checkpoint_every=1, max_disc_logit=0)
    message = str(error.value)
    step = int(re.search(r"at step (\d+)", message).group(1))
    assert "non-finite" in message and f"last good checkpoint: {checkpoint} (step {step - 1})" in message
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == step - 1
    assert all(torch.isfinite(value).all() for value in saved["student"].values())
    assert all(math.isfinite(v) for kind, _, values in saved["history"] for v in values.values())


def test_weights_an_update_made_non_finite_are_never_checkpointed(tmp_path):
    """Step 40's losses come before its update: only the weights show that the update broke them."""
    checkpoint = tmp_path / "training.pt"
    updates = []

    def break_the_students_update_at_step_40(optimizer, args, kwargs):
        updates.append(optimizer)
        if len(updates) == 80:  # every step updates D, then G
            optimizer.param_groups[0]["params"][0].grad.fill_(math.inf)

    handle = register_optimizer_step_pre_hook(break_the_students_update_at_step_40)
    try:
        with pytest.raises(TrainingDiverged) as error:
            train(60, checkpoint=checkpoint, checkpoint_every=20)
    finally:
        handle.remove()
    assert str(error.value) == (f"non-finite student weights at step 40: lower lr or set grad_clip; "
                                f"last good checkpoint: {checkpoint} (step 20)")
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] == 20
    assert all(torch.isfinite(value).all() for network in ("student", "disc") for value in saved[network].values())


def test_every_loss_part_is_float32_under_bf16_autocast():
    # As on CUDA, where the steps run under bf16 autocast: the parts are weighed, summed and logged in float32.
    torch.manual_seed(0)
    student, disc = StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), ProjectionDiscriminator(1, 10, [8, 16, 32])
    samples = teacher_samples(8, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = student(samples.z, samples.y)
        real = torch.rand_like(fake)
        student_out, teacher_out = disc(fake, samples.y), disc(real, samples.y)
        _, parts = generator_loss(LossSettings(kl_weight=1.0), fake, real, student_out, teacher_out)
    assert student_out[1][0].dtype == torch.bfloat16  # the features themselves are bf16
    assert {name: part.dtype for name, part in parts.items()} == {
        "pixel": torch.float32, "adversarial": torch.float32, "feature": torch.float32, "kl": torch.float32}


def test_an_exploding_discriminator_stops_training_at_its_limit():
    logits = [values["disc/abs_logit"] for _, values in train(20)[2].logs]
    assert all(0 < logit < 1000 for logit in logits)  # a healthy run stays far below the default limit
    with pytest.raises(TrainingDiverged, match=r"discriminator exploding at step 10: mean \|logit\| .* > "
                                               r"max_disc_logit 1e-06; .*no checkpoint was saved"):
        train(20, max_disc_logit=1e-6)


def test_a_compiled_student_trains():
    torch.manual_seed(0)
    untrained = heldout_fidelity(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    _, final, _ = train(20, compile=True)
    assert final["l1"] < untrained["l1"] * 0.8


def test_a_student_trains_on_any_device(device):
    # On CUDA the steps run under bf16 autocast; held-out fidelity is measured in float32 all the same.
    torch.manual_seed(0)
    untrained = heldout_fidelity(StudentGenerator(IM, 16, 10, 32, [32, 32, 16, 8]), teacher_samples(100, 2))
    student, final, _ = train(60, device=device)
    assert next(student.parameters()).device.type == device.type
    assert final["l1"] < untrained["l1"] / 2


def test_a_student_for_many_classes_and_large_images_trains():
    # The ImageNet CGN's size: 256x256, 1,000 classes (a few samples of some, as a tiny test can afford).
    teacher = SyntheticTeacher(SyntheticSettings(num_classes=1000, image_size=256))
    z = torch.randn(48, teacher.z_dims["texture"], generator=torch.Generator().manual_seed(0))
    y = torch.arange(48) * 21  # classes 0, 21, ..., 987
    pixels = torch.from_numpy(encode_images(teacher("texture", z, y), (-1.0, 1.0))).permute(0, 3, 1, 2)
    samples = PairedSamples(z, y, pixels, (-1.0, 1.0), class_means=torch.zeros(1000, 3, 256, 256))
    torch.manual_seed(0)
    student = StudentGenerator("texture", 8, 1000, 256, [16, 16, 16, 8, 8, 8, 8])
    settings = TrainSettings(steps=4, batch_size=8, log_every=2, eval_every=10)
    final = distill(student, ProjectionDiscriminator(3, 1000, [8, 16, 32]), samples, samples, LossSettings(),
                    settings, seed=0)
    assert set(final) == {"l1", "psnr", "ssim"} and all(map(math.isfinite, final.values()))
    assert student(z[:2], y[:2]).shape == (2, 3, 256, 256)


def test_heldout_fidelity_at_256_renders_a_bounded_number_of_pixels_at_a_time():
    """Chunks are sized in pixels: 16 images at 256x256 (a count of 1,024 took an evaluation to 20 GB)."""
    torch.manual_seed(0)
    student = StudentGenerator("texture", 8, 10, 256, [8] * 7)
    z, y = torch.randn(40, 8), torch.arange(40) % 10
    heldout = PairedSamples(z, y, torch.randint(0, 256, (40, 3, 256, 256), dtype=torch.uint8), (-1.0, 1.0))
    sizes = []
    student.register_forward_hook(lambda module, inputs, output: sizes.append(len(inputs[0])))
    metrics = heldout_fidelity(student, heldout)
    assert sizes == [16, 16, 8] and math.isfinite(metrics["psnr"])
