"""The studies' queue and report: variants found by their params, tables and verdicts from the metrics."""

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipeline.profile import merged, nested
from pipeline.report import steps_to_common, variants, write_report
from pipeline.runs import Run, archive, load
from pipeline.studies import (COLOUR_FULL, FULL_OBJECTIVE, STUDIES, TERMS_OFF, experiments, for_students,
                              queue_commands, teacher_params)

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())
SHAPE_STEPS = (100, 200, 300)


def fake_run(name: str, changes: dict, finals: dict[str, float], speed: float = 1.0,
             teacher_accuracy: float = 0.9, memorised: float = 0.0, grid: Path | None = None) -> Run:
    """A run with `changes` over the defaults, its students ending at `finals` (and `memorised` higher on their
    training samples); `speed` > 1 gets there sooner; its counterfactual grid at `grid`."""
    metrics = {f"data/metrics/students/{im}/live/metrics.json": {"heldout": {key: value}, "baseline": {key: 0.0},
                                                         "train_samples": {key: value + memorised},
                                                         "steps_to_95pct_gain": 200}
               for im, key, value in (("shape", "mask_iou", finals["shape"]), ("texture", "psnr", finals["texture"]),
                                      ("background", "psnr", finals["background"]))}
    metrics["data/evaluate/metrics.json"] = {"student": {"accuracy": 0.9, "accuracy_same_colour": 0.2},
                                             "real_vs_counterfactual": {"train_accuracy": 0.6, "test_accuracy": 0.55}}
    metrics["data/reference/metrics.json"] = {"teacher": {"accuracy": teacher_accuracy}}
    # Each curve rises linearly to its final value, reached at step 300 / speed.
    curves = {im: [(s, final * min(1.0, s * speed / 300)) for s in SHAPE_STEPS] for im, final in finals.items()}
    return Run(name, f"rev-{name}", merged(DEFAULTS, nested(changes)), metrics, curves=curves, grid=grid)


@pytest.fixture
def study_runs(tmp_path):
    specs = {
        "synthetic-baseline": ({}, {"shape": 0.80, "texture": 36.0, "background": 49.0}, 1.0),
        "synthetic-kl-1": ({"loss.kl_weight": 1.0}, {"shape": 0.82, "texture": 36.5, "background": 48.0}, 1.5),
        "synthetic-l2": ({"loss.pixel": "l2"}, {"shape": 0.75, "texture": 35.0, "background": 50.0}, 1.0),
        "synthetic-noise": ({"compose.mask_noise_std": 0.2}, {"shape": 0.80, "texture": 36.0, "background": 49.0}, 1.0),
    }
    grid = tmp_path / "grid.png"
    grid.write_bytes(png_bytes())
    return {name: fake_run(name, changes, finals, speed, grid=grid) for name, (changes, finals, speed) in specs.items()}


def seeded_runs(specs: dict[str, tuple[dict, list[tuple]]], age: int = 0) -> dict[str, Run]:
    """Runs named as the studies name them, `synthetic-<variant>[-seed<k>]`: variant -> (its changes, per seed
    (shape, texture, background finals[, teacher accuracy])). Runs of an `age` > 0 are as pipeline.runs.load
    keeps a name queued again."""
    runs = {}
    for variant, (changes, per_seed) in specs.items():
        for seed, (shape, texture, background, *teacher_accuracy) in enumerate(per_seed):
            name = f"synthetic-{variant}" + (f"-seed{seed}" if seed else "")
            run = fake_run(name, {**changes, "seed": seed},
                           {"shape": shape, "texture": texture, "background": background},
                           teacher_accuracy=(teacher_accuracy or [0.9])[0])
            key = f"{name}@{age}" if age else name
            runs[key] = dataclasses.replace(run, rev=f"{run.rev}-{age}", age=age) if age else run
    return runs


def png_bytes() -> bytes:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(png, format="PNG")
    return png.getvalue()


def test_variants_are_found_by_their_params_not_their_names(study_runs):
    runs = study_runs
    renamed = {("synthetic-something" if name == "synthetic-kl-1" else name): run for name, run in runs.items()}
    kl = renamed["synthetic-something"]
    renamed["synthetic-something"] = dataclasses.replace(kl, age=0)
    renamed["synthetic-older"] = dataclasses.replace(kl, rev="old", age=1)
    found = variants(renamed, "synthetic", "kl", renamed["synthetic-baseline"])
    assert found["kl-1"].rev == "rev-synthetic-kl-1" and found["kl-0"].rev == "rev-synthetic-baseline"
    assert "kl-0.5" not in found  # never run: left out, not invented


def test_a_run_at_another_forward_batch_is_the_same_variant_but_another_loss_is_not(study_runs):
    runs = study_runs
    kl = runs["synthetic-kl-1"]
    faster = merged(kl.params, nested({"generate.batch_size": 10, "compose.batch_size": 10}))
    runs = {**runs, "synthetic-kl-1": dataclasses.replace(kl, params=faster)}
    assert variants(runs, "synthetic", "kl", runs["synthetic-baseline"])["kl-1"].rev == kl.rev
    other = merged(kl.params, nested({"loss.pixel": "l2"}))
    runs["synthetic-kl-1"] = dataclasses.replace(kl, params=other)
    assert "kl-1" not in variants(runs, "synthetic", "kl", runs["synthetic-baseline"])


def test_report_gives_tables_verdicts_and_figures(study_runs, tmp_path):
    path = write_report(study_runs, ["synthetic"], tmp_path, DEFAULTS)
    text = path.read_text()
    assert "| kl-1 | `loss.kl_weight=1.0` | 1 | 0.820 (200) | 36.50 (200) | 48.00 (200) | 0.900 | 1.000 |" in text
    assert "Steps to 95 % of the gain over the class-mean baseline" in text
    # kl-1 reaches the common target sooner on all three students; L2 ends lower on shape and texture only.
    assert "3 of 3 students reach the common target in fewer steps" in text and ": held." in text
    assert "L2 ends lower on 2 of 3 students (shape, texture): held." in text
    assert "| noise | `compose.mask_noise_std=0.2` | 0.600 | 0.550 | 99.9 / 14.96 |" in text
    assert "dvc exp run -n synthetic-l2 -S loss.pixel=l2" in text
    for figure in ("synthetic-curves.png", "synthetic-masks.png"):
        assert Image.open(tmp_path / "figures" / figure).size[0] > 300


def test_a_figure_the_report_no_longer_shows_is_deleted(study_runs, tmp_path):
    """A section renamed after its baseline changed leaves its old figure behind unless the report clears it."""
    stale = tmp_path / "figures" / "synthetic-0123456-masks.png"
    stale.parent.mkdir()
    stale.write_bytes(png_bytes())
    write_report(study_runs, ["synthetic"], tmp_path, DEFAULTS)
    assert not stale.exists()
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"synthetic-curves.png", "synthetic-masks.png"}


def test_the_mask_table_reads_against_the_teachers_own_realism_where_it_was_measured(tmp_path):
    """Reference measures the teacher's counterfactuals against real images (the students' test in evaluate);
    records made before it did have no such figure, and the report then says nothing of it."""
    runs = seeded_runs({"baseline": ({}, [(0.80, 36.0, 49.0)] * 2),
                        "noise": ({"compose.mask_noise_std": 0.2}, [(0.80, 36.0, 49.0)] * 2)})
    assert "The teacher's own counterfactuals" not in write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    for run, test_accuracy in zip(runs.values(), (0.70, 0.72, 0.0, 0.0)):
        run.metrics["data/reference/metrics.json"]["real_vs_counterfactual"] = {"train_accuracy": 0.75,
                                                                                "test_accuracy": test_accuracy}
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert ("The teacher's own counterfactuals against the same real images (stage reference, the baseline's "
            "masks): train 0.750 ± 0.000, test 0.710 ± 0.014.") in text.split("### Shape mechanism")[1]


def test_the_edges_table_sets_each_blur_against_crisp_masks_beyond_the_spread(tmp_path):
    """Blurred counterfactuals against crisp real digits give themselves away; blurred on both sides they do not
    (0.57 against 0.55 +- 0.01: within the spread). The teacher's realism stands beside each row."""
    realism = {"baseline": ({}, [0.54, 0.55, 0.56], 0.60),
               "blur": ({"compose.mask_blur": 0.45}, [0.90, 0.92, 0.94], 0.60),
               "real-blur": ({"evaluate.real_mask_blur": 0.45}, [0.70, 0.71, 0.72], 0.85),
               "both-blur": ({"compose.mask_blur": 0.45, "evaluate.real_mask_blur": 0.45}, [0.56, 0.57, 0.58], 0.85)}
    runs = seeded_runs({variant: ({"evaluate.data": "mnist", **changes}, [(0.8, 36.0, 49.0)] * 3)
                        for variant, (changes, _, _) in realism.items()})
    for name, run in runs.items():
        variant = name.removeprefix("synthetic-").split("-seed")[0]
        per_seed, teacher = realism[variant][1:]
        realism_metrics = run.metrics["data/evaluate/metrics.json"]["real_vs_counterfactual"]
        realism_metrics["test_accuracy"] = per_seed[run.params["seed"]]
        run.metrics["data/reference/metrics.json"]["real_vs_counterfactual"] = {"test_accuracy": teacher}
    section = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text().split("### Grey edges")[1]
    assert ("| both-blur | `compose.mask_blur=0.45, evaluate.real_mask_blur=0.45` | 3 | 0.570 ± 0.010 "
            "| 0.850 ± 0.000 | 0.900 ± 0.000 | 0.900 ± 0.000 |") in section
    assert "| crisp | `(baseline)` | 3 | 0.550 ± 0.010 | 0.600 ± 0.000 |" in section
    assert ("against crisp: blur higher; real-blur higher; both-blur no difference beyond the spread.") in section
    # Without real digits (evaluate.data teacher) real-blur is the baseline: no row of its own, and no section
    # for a control alone.
    teacher_data = {name: dataclasses.replace(run, params=merged(run.params, {"evaluate": {"data": "teacher"}}))
                    for name, run in runs.items() if "-real-blur" in name or "-blur" not in name}
    assert "### Grey edges" not in write_report(teacher_data, ["synthetic"], tmp_path, DEFAULTS).read_text()


def test_over_seeds_the_report_gives_mean_and_spread_and_calls_only_differences_beyond_it(tmp_path):
    """Three seeds per variant: each figure is a mean ± standard deviation, and L2 counts as worse only where
    its runs lie below L1's by more than the spread (shape and background; texture is lower on average, by less
    than its spread)."""
    runs = seeded_runs({
        "baseline": ({}, [(0.80, 36.2, 49.0), (0.82, 36.3, 49.1), (0.84, 36.4, 49.2)]),
        "l2": ({"loss.pixel": "l2"}, [(0.70, 35.9, 47.0), (0.71, 36.2, 47.1), (0.72, 36.5, 47.2)]),
        "l2-shape": ({"ims.shape.loss.pixel": "l2"}, [(0.86, 36.2, 49.0), (0.87, 36.3, 49.1), (0.88, 36.4, 49.2)])})
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "| baseline | `(the teacher's own params)` | 3 | 0.820 ± 0.020 (200) | 36.30 ± 0.10 (200) |" in text
    assert "L2 ends lower on 2 of 3 students (shape, background): held." in text
    assert ("*L2 for the shape student alone* (l2-shape vs baseline): higher on shape; no difference beyond the spread "
            "on texture, background.") in text
    assert "dvc exp run -n synthetic-l2-seed2 -S seed=2 -S loss.pixel=l2" in text  # every seed's command


def test_each_student_is_judged_against_its_class_mean_baseline_over_the_seeds(tmp_path):
    """Texture ends 0.07 dB above its class mean with a spread of 0.15 dB: left at the class mean (as wildlife's
    students at the default widths were); shape and background lie above it beyond their spread."""
    runs = seeded_runs({"baseline": ({}, [(0.80, 36.2, 49.0), (0.82, 35.9, 49.1), (0.84, 36.1, 49.2)])})
    for run in runs.values():
        run.metrics["data/metrics/students/shape/live/metrics.json"]["baseline"]["mask_iou"] = 0.5
        run.metrics["data/metrics/students/texture/live/metrics.json"]["baseline"]["psnr"] = 36.0
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "| shape (IoU) | 3 | 0.500 ± 0.000 | 0.820 ± 0.020 | +0.320 ± 0.020 |" in text
    assert "| texture (PSNR dB) | 3 | 36.00 ± 0.00 | 36.07 ± 0.15 | +0.07 ± 0.15 |" in text
    assert "- Above the class mean beyond the spread: shape, background; at the class mean: texture." in text


def test_a_seed_that_never_reaches_the_common_target_counts_its_last_step(tmp_path):
    """KL's third seed ends far below the others (texture 30 dB): the seed-mean target (95 % of 34 dB) lies
    above its whole curve. It counts its last step (300), so KL is slower there, not a crash."""
    runs = seeded_runs({"baseline": ({}, [(0.80, 36.0, 49.0)] * 3),
                              "kl-1": ({"loss.kl_weight": 1.0}, [(0.80, 36.0, 49.0)] * 2 + [(0.80, 30.0, 49.0)])})
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "*KL helps the students converge*: with kl_weight 1 (on features) 0 of 3 students" in text
    assert "| kl-1 | 300 / 300 | 300 / 300 | 300 / 300 |" in text


def test_claim_e_is_held_only_for_a_transparency_above_the_opaque_masks_beyond_the_spread(tmp_path):
    accuracies = {"baseline": ({}, [0.77, 0.78, 0.79]),
                  "transparent-0.25": ({"compose.mask_transparency": 0.25, "compose.teacher_mask_transparency": 0.25},
                                       [0.80, 0.81, 0.82]),
                  "transparent-0.75": ({"compose.mask_transparency": 0.75, "compose.teacher_mask_transparency": 0.75},
                                       [0.76, 0.79, 0.82])}
    runs = seeded_runs({variant: (changes, [(0.8, 36.0, 49.0, accuracy) for accuracy in per_seed])
                              for variant, (changes, per_seed) in accuracies.items()})
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "| transparent-0.25 | `compose.mask_transparency=0.25, compose.teacher_mask_transparency=0.25` | 3 " \
           "| 0.810 ± 0.010 |" in text
    # 0.75 is higher on average (0.790 vs 0.780) but within its spread: only 0.25 counts.
    # Student / teacher per seed (0.9 over 0.77, 0.78, 0.79), then their mean and spread; the baseline alone
    # among the loss variants has no steps to compare.
    assert "| 0.900 ± 0.000 | 1.154 ± 0.015 |" in text and "Steps to 95 %" not in text
    assert "beyond the seed spread for transparent-0.25: held." in text


def test_at_the_cgn_papers_n_one_seed_counts_a_difference_only_beyond_the_spread_at_the_smaller_n(tmp_path):
    """At 10,000 three seeds per masks (spread 0.01); at 100,000 one. Opaque: 0.85 vs 0.78 (+0.07 > 0.02: higher).
    Transparency 0.25: 0.86 vs 0.85 (within the two spreads); 0.75, never run at 10,000, borrows the opaque
    masks' spread: 0.90 vs 0.85 counts."""
    scale = STUDIES["scale"]
    specs = {"baseline": ({}, [0.77, 0.78, 0.79]),
             "transparent-0.25": (STUDIES["transparent"]["transparent-0.25"], [0.78, 0.79, 0.80]),
             "n-100000": (scale["n-100000"], [0.85]),
             "n-100000-transparent-0.25": (scale["n-100000-transparent-0.25"], [0.86]),
             "n-100000-transparent-0.75": (scale["n-100000-transparent-0.75"], [0.90])}
    runs = seeded_runs({variant: (changes, [(0.8, 36.0, 49.0, accuracy) for accuracy in per_seed])
                        for variant, (changes, per_seed) in specs.items()})
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "| 10,000 | transparent-0.25 | 3 | 0.790 ± 0.010 | 0.900 ± 0.000 | 1.139 ± 0.014 |" in text
    assert "| 100,000 | transparent-0.75 | 1 | 0.900 | 0.900 | 1.000 |" in text
    assert "against 10,000: on the teacher's +0.070, higher; on the students' +0.000, within the spread." in text
    assert "beyond the seed spread, for transparent-0.75: held." in text
    assert "dvc exp run -n synthetic-n-100000 -S compose.n=100000" in text


def test_the_objective_verdicts_say_which_students_the_terms_move_beyond_the_spread(tmp_path):
    """A pixel-only baseline (as the CGN-MNIST profile): the full objective helps texture and background beyond
    the spread and leaves the shape within it; for the colour students alone only the texture moves."""
    pixel_only = dict(TERMS_OFF)  # as the CGN-MNIST profile says it: the shared terms off
    runs = seeded_runs({
        "baseline": (pixel_only, [(0.85, 40.0, 42.0), (0.86, 40.1, 42.1), (0.87, 40.2, 42.2)]),
        "full": ({}, [(0.86, 41.0, 43.0), (0.86, 41.1, 43.1), (0.86, 41.2, 43.2)]),
        "per-mechanism": ({**pixel_only, **COLOUR_FULL}, [(0.85, 40.9, 42.0), (0.86, 41.0, 42.2), (0.87, 41.1, 42.4)]),
    })
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert ("*The adversarial and feature terms help the colour students* (full vs baseline): "
            "higher on texture, background; no difference beyond the spread on shape: held.") in text
    assert ("*The full objective for the colour students alone* (per-mechanism vs baseline): higher on "
            "texture; no difference beyond the spread on shape, background.") in text
    assert "| per-mechanism | `ims.texture.loss.adversarial_weight=0.01, ims.texture.loss.feature_weight=1.0, " in text


def test_the_data_table_gives_held_out_and_train_fidelity_per_teacher_samples_per_class(study_runs, tmp_path):
    """The baseline (1,000 per class, the default) is the data study's middle row; fewer samples, more memorised."""
    runs = study_runs
    for per_class, memorised in ((250, 0.05), (4000, 0.0)):
        name = f"synthetic-per-class-{per_class}"
        runs[name] = fake_run(name, {"generate.per_class": per_class},
                                 {"shape": 0.80, "texture": 36.0, "background": 49.0}, memorised=memorised)
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    table = text.split("### Data efficiency")[1].split("Commands")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 250", "| 1,000", "| 4,000"]
    assert "| 250 | 1 | 0.800 / 0.850 | 36.00 / 36.05 | 49.00 / 49.05 | 0.900 | 1.000 |" in rows


def test_studies_made_before_the_baseline_changed_keep_the_baseline_they_were_made_against(tmp_path):
    """The profile gave the shape student L2 after the pixel study ran; the baseline ran again, then the data
    study. The pixel study still compares L2 with the L1 baseline, in a section that says what changed since;
    the data study and the current baseline's own row belong to the newest section, where the old runs are
    variants of the new baseline too: the old baseline its l1-shape, the old l2 (every student on L2) its l2."""
    old = seeded_runs({"baseline": ({}, [(0.80, 36.0, 49.0), (0.81, 36.1, 49.1)]),
                       "l2": ({"loss.pixel": "l2"}, [(0.82, 35.0, 47.0), (0.83, 35.1, 47.1)])}, age=1)
    shape_l2 = {"ims.shape.loss.pixel": "l2"}
    new = seeded_runs({"baseline": (shape_l2, [(0.86, 36.0, 49.0), (0.87, 36.1, 49.1)]),
                             "per-class-250": ({**shape_l2, "generate.per_class": 250},
                                               [(0.84, 35.0, 48.0), (0.85, 35.1, 48.1)])})
    text = write_report({**old, **new}, ["synthetic"], tmp_path, DEFAULTS).read_text()
    current, earlier = text.split("## Teacher: synthetic, studies against an earlier baseline")
    assert "| baseline | `(the teacher's own params)` | 2 | 0.865 ± 0.007 (200) |" in current
    assert "| 250 | 2 | 0.845 ± 0.007 / 0.845 ± 0.007 |" in current
    assert "| l1-shape | `ims.shape.loss.pixel=l1` | 2 | 0.805 ± 0.007 (200) |" in current
    assert "| l2 | `loss.pixel=l2` | 2 | 0.825 ± 0.007 (200) |" in current
    assert "`ims.shape.loss.pixel` unset (now `l2`)." in earlier and "### Data efficiency" not in earlier
    assert "| baseline | `(the teacher's own params)` | 2 | 0.805 ± 0.007 (200) |" in earlier
    assert "L2 ends lower on 2 of 3 students (texture, background): held." in earlier
    assert "dvc exp run -n synthetic-l2-seed1 -S seed=1 -S loss.pixel=l2" in earlier
    assert len(list((tmp_path / "figures").glob("synthetic*-curves.png"))) == 2


def test_a_study_that_is_a_variant_of_two_baselines_is_compared_with_each(tmp_path):
    """The profile gave the texture student the adversarial and feature terms after the objective study: the
    per-mechanism runs (both colour students' terms) are a variant of the old pixel-only baseline and of the new
    one alike. The evidence for the change stays against the old baseline; the new section shows the same runs
    beside today's profile, and the old baseline as its pixel-only variant, the verdict's control."""
    pixel_only = dict(TERMS_OFF)  # as the CGN-MNIST profile says it: the shared terms off
    texture_terms = {key: value for key, value in COLOUR_FULL.items() if key.startswith("ims.texture.")}
    seeds = [(0.85, 33.0, 72.0), (0.86, 33.1, 72.1), (0.87, 33.2, 72.2)]
    old = seeded_runs({"baseline": (pixel_only, seeds),
                       "per-mechanism": ({**pixel_only, **COLOUR_FULL},
                                         [(shape, texture + 0.5, background) for shape, texture, background in seeds])},
                      age=1)
    new = seeded_runs({"baseline": ({**pixel_only, **texture_terms},
                                    [(shape, texture + 0.5, background) for shape, texture, background in seeds])})
    text = write_report({**old, **new}, ["synthetic"], tmp_path, DEFAULTS).read_text()
    current, earlier = text.split("## Teacher: synthetic, studies against an earlier baseline")
    assert ("(per-mechanism vs baseline): higher on texture; no difference beyond the spread on shape, "
            "background.") in earlier
    assert "`ims.texture.loss.adversarial_weight` unset (now `0.01`)" in earlier
    assert ("(per-mechanism vs pixel-only): higher on texture; no difference beyond the spread on shape, "
            "background.") in current
    # Each table says a variant's overrides over its own baseline: what the variant changes there.
    assert "| pixel-only | `ims.texture.loss.adversarial_weight=0.0, ims.texture.loss.feature_weight=0.0` |" in current
    assert "| per-mechanism | `ims.background.loss.adversarial_weight=0.01, " in current
    assert "| per-mechanism | `ims.texture.loss.adversarial_weight=0.01, " in earlier
    for section in (current, earlier):
        assert "dvc exp run -n synthetic-per-mechanism-seed2 -S seed=2 " in section


def test_a_profile_that_gives_the_shape_its_own_terms_is_judged_against_the_runs_made_before(tmp_path):
    """The CGN profile's shape gained the adversarial and feature terms: the runs of the profile before (shared
    terms off, no `ims.shape.loss` terms) compute what this baseline's pixel-only variant computes, so they are
    that variant, though no key of theirs says so; the shape verdict reads against them."""
    shape_full = {**TERMS_OFF, **for_students(FULL_OBJECTIVE, ("shape",))}
    runs = {**seeded_runs({"baseline": (TERMS_OFF, [(0.86, 40.0, 42.0), (0.86, 40.1, 42.1)])}, age=1),
            **seeded_runs({"baseline": (shape_full, [(0.84, 40.0, 42.0), (0.85, 40.1, 42.1)])})}
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    current = text.split("## Teacher: synthetic, studies against an earlier baseline")[0]
    assert ("| pixel-only | `ims.shape.loss.adversarial_weight=0.0, ims.shape.loss.feature_weight=0.0` | 2 "
            "| 0.860 ± 0.000 (200) |") in current
    assert ("*The full objective for the shape student alone* (baseline vs pixel-only): lower on shape; "
            "no difference beyond the spread on texture, background.") in current


def test_a_profile_with_the_shape_on_l2_is_judged_against_l1_for_the_shape_with_realism_beside_it(tmp_path):
    """The CGN profile trains the shape on L2: l2-shape is the baseline, l1-shape the other side. Each row gives
    its real-vs-counterfactual test accuracy, the teacher's own under the table."""
    shape_l2 = {"ims.shape.loss.pixel": "l2"}
    runs = seeded_runs({"baseline": (shape_l2, [(0.86, 36.0, 49.0), (0.87, 36.0, 49.0)]),
                        "l1-shape": ({"ims.shape.loss.pixel": "l1"}, [(0.84, 36.0, 49.0), (0.85, 36.0, 49.0)])})
    for name, run in runs.items():
        run.metrics["data/evaluate/metrics.json"]["real_vs_counterfactual"]["test_accuracy"] = (
            0.93 if "baseline" in name else 0.66)
        run.metrics["data/reference/metrics.json"]["real_vs_counterfactual"] = {"train_accuracy": 0.58,
                                                                                "test_accuracy": 0.56}
        # How many mask pixels blend foreground and background: the students' own, and the teacher's (the same data).
        run.metrics["data/metrics/students/shape/live/metrics.json"]["heldout"].update(
            mask_soft=0.09 if "baseline" in name else 0.05, mask_soft_target=0.04)
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "*L2 for the shape student alone* (l2-shape vs l1-shape): higher on shape;" in text
    assert "| l1-shape | `ims.shape.loss.pixel=l1` | 2 | 0.845 ± 0.007 (200) |" in text
    table = text.split("### Loss ablations")[1].split("Steps to 95 %")[0]
    assert "| OOD accuracy | student / teacher | real vs CF test | soft mask pixels |" in table
    # Four digits: the fractions differ between seeds in the fourth.
    assert "| 0.900 ± 0.000 | 1.000 ± 0.000 | 0.930 ± 0.000 | 0.0900 ± 0.0000 |" in table
    assert "| 0.660 ± 0.000 | 0.0500 ± 0.0000 |" in table
    # Records made before the metric: no column of n/a.
    for run in runs.values():
        del run.metrics["data/metrics/students/shape/live/metrics.json"]["heldout"]["mask_soft"]
    table = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text().split("### Loss ablations")[1]
    assert "| real vs CF test |\n" in table and "soft mask pixels |" not in table
    assert ("the baseline's masks): train 0.580 ± 0.000, test 0.560 ± 0.000. Soft mask pixels (values between 0.1 "
            "and 0.9: a blend of foreground and background) in the teacher's held-out masks: 0.0400 ± 0.0000."
            ) in table


def test_no_verdict_compares_a_baseline_with_itself(tmp_path):
    """A baseline with the shape on L2 is both the pixel study's `l1` and its `l2-shape` (and no `l1-shape` ran)."""
    runs = seeded_runs({"baseline": ({"ims.shape.loss.pixel": "l2"}, [(0.86, 36.0, 49.0)])})
    text = write_report(runs, ["synthetic"], tmp_path, DEFAULTS).read_text()
    assert "| baseline | `(the teacher's own params)` | 1 | 0.860 (200) |" in text
    assert "*L2 for the shape student alone*" not in text


def test_a_teacher_without_baseline_is_refused_in_one_line(study_runs, tmp_path):
    with pytest.raises(SystemExit, match="no experiment cgn-baseline; .* pick one of: synthetic"):
        write_report(study_runs, ["cgn"], tmp_path, DEFAULTS)
    assert not (tmp_path / "report.md").exists()


def test_steps_to_common_uses_a_target_both_reached():
    fast, slow = [(100, 0.5), (200, 0.9)], [(100, 0.3), (200, 0.6), (300, 0.8)]
    # Floor 0, lower final 0.8: the target is 0.76, which `slow` reaches only at its end.
    assert steps_to_common(fast, slow, floor=0.0) == (200, 300)
    # Floor 0.4, a quarter of the gain: the target is 0.5.
    assert steps_to_common(fast, slow, floor=0.4, fraction=0.25) == (100, 200)


def test_finished_experiments_become_records_that_a_report_reads_without_dvc(tmp_path):
    """exp_show's rows name the runs; each finished run's params, metrics, curves and grid are read whole at its
    own commit (exp_show flattens metrics into columns) into a record, written once. The records alone give the
    runs back, the newest finished first; a name queued again keeps its older run as `<name>@<rev7>`."""
    shape = "data/metrics/students/shape/live/metrics.json"
    revs = {n: str(n) * 40 for n in range(5)}
    commits = {revs[n]: {"params.yaml": f"seed: {n}\n", shape: json.dumps({"heldout": {"mask_iou": n / 10}}),
                         "data/metrics/students/shape/fidelity.tsv": f"step\tstudent\tbaseline\n10\t0.{n}\t0.1\n"}
               for n in range(5)}
    del commits[revs[3]][shape]  # queued: no metrics yet
    # A run made before fidelity.tsv existed: its curve is DVCLive's (step, value).
    del commits[revs[1]]["data/metrics/students/shape/fidelity.tsv"]
    commits[revs[1]]["data/metrics/students/shape/live/plots/metrics/heldout/mask_iou.tsv"] = "step\tv\n10\t0.5\n"
    commits[revs[2]]["data/metrics/counterfactuals/grid.png"] = png_bytes()

    class Commit:  # the methods of dvc.api.DVCFileSystem that pipeline.runs uses
        def __init__(self, rev):
            self.files = commits[rev]

        def exists(self, path):
            return path in self.files

        def read_text(self, path):
            if path not in self.files:
                raise FileNotFoundError(path)
            return self.files[path]

        read_bytes = read_text

    rows = [{"Experiment": None, "rev": "workspace", "State": None},
            {"Experiment": "x", "rev": revs[2], "State": "Success"},
            {"Experiment": "x", "rev": revs[1], "State": "Success"},
            {"Experiment": "running", "rev": revs[0], "State": "Running"},
            {"Experiment": "failed", "rev": revs[0], "State": "Failed"},
            {"Experiment": "queued", "rev": revs[3], "State": None},
            {"Experiment": "old-0.5", "rev": revs[4], "State": None}]  # made before DVC kept an executor's state
    finished = {revs[2]: 300, revs[1]: 200, revs[4]: 100}.get
    written = archive(rows, tmp_path, Commit, finished)
    assert sorted(path.name for path in written) == ["old-0.5@4444444.json", "x@1111111.json", "x@2222222.json"]
    assert archive(rows, tmp_path, Commit, finished) == []  # recorded once
    runs = load(tmp_path)
    assert set(runs) == {"x", "x@1111111", "old-0.5"} and runs["x"].rev == revs[2] and runs["x"].params == {"seed": 2}
    assert runs["x@1111111"].name == "x" and runs["x"].age < runs["x@1111111"].age < runs["old-0.5"].age
    assert runs["x"].metrics == {shape: {"heldout": {"mask_iou": 0.2}}}
    assert runs["x"].curves == {"shape": [(10, 0.2)]} and runs["x@1111111"].curves == {"shape": [(10, 0.5)]}
    assert Image.open(runs["x"].grid).size == (4, 4) and runs["old-0.5"].grid is None  # a half-size preview


def test_studies_queue_one_run_per_distinct_variant_baseline_first_compose_last():
    name, base = teacher_params([], ["teacher.cgn-mnist.checkpoint=teachers/t.pth",
                                     "evaluate.textures_dir=../elsewhere/textures"], ROOT)
    # A repository path stays relative and is copied into the queued run; a path outside it is made absolute.
    assert name == "synthetic" and base["teacher.cgn-mnist.checkpoint"] == "teachers/t.pth"
    assert base["evaluate.textures_dir"] == str((ROOT / "../elsewhere/textures").resolve())
    command = queue_commands({"synthetic-baseline": base}, ROOT)[0]
    assert command[:7] == ["dvc", "exp", "run", "--queue", "-n", "synthetic-baseline", "-C"]
    assert command[7] == "teachers/t.pth" and command.count("-C") == 1
    queued = list(experiments(name, {}, ["kl", "kl_place", "masks"], ROOT))
    assert queued[0] == "synthetic-baseline"
    assert "synthetic-kl-features" not in queued  # the same params as kl-1
    assert queued[-4:] == ["synthetic-noise", "synthetic-rotation", "synthetic-transparency", "synthetic-blur"]


def test_each_variant_is_queued_at_every_seed_downstream_variants_still_last():
    queued = experiments("synthetic", {}, ["pixel", "masks"], ROOT, seeds=3)
    assert list(queued)[:3] == ["synthetic-baseline", "synthetic-baseline-seed1", "synthetic-baseline-seed2"]
    assert [queued[f"synthetic-l2{suffix}"].get("seed") for suffix in ("", "-seed1", "-seed2")] == [None, 1, 2]
    assert list(queued)[-3:] == ["synthetic-blur", "synthetic-blur-seed1", "synthetic-blur-seed2"]
    # A variant of evaluate's params alone keeps the students too: after every run that trains them.
    queued = list(experiments("synthetic", {"evaluate.data": "mnist"}, ["edges", "pixel"], ROOT))
    assert queued[-3:] == ["synthetic-blur", "synthetic-real-blur", "synthetic-both-blur"]
    assert queued.index("synthetic-l2") < queued.index("synthetic-blur")


def test_blurring_real_digits_is_no_experiment_where_the_protocol_has_none():
    """With `evaluate.data: teacher` the real digits' blur changes nothing: real-blur is the baseline and
    both-blur is blur, so neither is queued (nor would the report pair them as variants)."""
    assert list(experiments("synthetic", {}, ["edges"], ROOT)) == ["synthetic-baseline", "synthetic-blur"]
    real_digits = experiments("synthetic", {"evaluate.data": "mnist"}, ["edges"], ROOT)
    assert real_digits["synthetic-real-blur"] == {"evaluate.data": "mnist", "evaluate.real_mask_blur": 0.45}


def test_variants_with_the_teachers_effective_settings_are_not_queued_again():
    """On a teacher with the full objective `full` is the baseline; on a pixel-only teacher `pixel-only` is. A
    variant is queued with the overrides that change something for this teacher only, so that a student it
    leaves alone keeps its stage's params (its distill stage can come from the run-cache)."""
    full_teacher = experiments("synthetic", {}, ["objective"], ROOT)
    assert list(full_teacher) == ["synthetic-baseline", "synthetic-pixel-only", "synthetic-per-mechanism",
                                  "synthetic-shape-full"]
    assert full_teacher["synthetic-pixel-only"] == {key: 0.0 for key in ("loss.adversarial_weight",
                                                                            "loss.feature_weight")}
    pixel_teacher = experiments("cgn", dict(TERMS_OFF), ["objective"], ROOT)
    assert list(pixel_teacher) == ["cgn-baseline", "cgn-full", "cgn-per-mechanism", "cgn-shape-full"]
    assert not any(key.startswith("ims.shape") for key in pixel_teacher["cgn-per-mechanism"])
    assert not any(key.startswith(("ims.texture", "ims.background")) for key in pixel_teacher["cgn-shape-full"])
    # The CGN profile: the shape has the terms of its own, so pixel-only must turn them off there too.
    shape_own = {**TERMS_OFF, **for_students(FULL_OBJECTIVE, ("shape",))}
    shape_terms = experiments("cgn", shape_own, ["objective"], ROOT)
    assert list(shape_terms) == ["cgn-baseline", "cgn-pixel-only", "cgn-full", "cgn-per-mechanism"]
    assert shape_terms["cgn-pixel-only"]["ims.shape.loss.adversarial_weight"] == 0.0
    # `full` there turns the terms on for the colour students in their own keys: a `loss.*` key would also be in
    # the shape's distill params and re-train a shape student that the run-cache holds.
    assert shape_terms["cgn-full"] == {**shape_own, **for_students(FULL_OBJECTIVE, ("texture", "background"))}
    colour_own = {**shape_own, **for_students(FULL_OBJECTIVE, ("texture",))}
    colour_terms = experiments("cgn", colour_own, ["objective"], ROOT)
    assert colour_terms["cgn-full"] == {**colour_own, **for_students(FULL_OBJECTIVE, ("background",))}


def test_a_bad_study_setting_fails_in_one_line_before_anything_is_queued():
    command = [sys.executable, "-m", "pipeline.studies", "--dry-run", "-S", "loss.kl_on=nowhere"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: loss.kl_on: 'nowhere' is not allowed; allowed: features, last_layer, pixels\n"
