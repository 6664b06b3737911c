"""`python -m pipeline.report`: the studies' experiments (pipeline.studies) as results/report.md, with figures.

    python -m pipeline.report                       # every teacher that has a `<teacher>-baseline` experiment
    python -m pipeline.report --teacher synthetic   # one of them

First every finished experiment of HEAD and its ancestors (`dvc.api.exp_show`) not yet recorded becomes a run
record in results/runs/ (pipeline.runs: commit them), then the report is made from the records alone, so it
holds the runs of every machine and session whose records were committed. A study's variant is found
by its params, not its name: the run that computes what the baseline's params with the variant's overrides laid
over them compute (each student's objective as `ims.<im>` resolves it), whichever keys said it.
A study shows with every baseline it ran a variant against: after a profile changes (and its baseline runs
again), the studies made before the change keep the baseline they were made against, in a section of their own,
and a run that is a variant of both baselines is compared with each.
The report is plain Markdown and PNG, so it reads on GitHub without DVC.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import re
import statistics
import sys
from pathlib import Path

import dvc.api
import matplotlib
import yaml

matplotlib.use("Agg")  # files only: no display on a CI machine or a GPU node
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.params import PARAMS_FILE  # noqa: E402
from pipeline.profile import flat, flow, merged, nested, override, setting  # noqa: E402
from pipeline.runs import EVALUATE, REFERENCE, RUNS, STUDENT, Run, archive, load, pooled  # noqa: E402
from pipeline.studies import PAPER_N, STUDIES, effective, needed  # noqa: E402
from skdcgn.mechanisms import IMS  # noqa: E402
from skdcgn.metrics.convergence import steps_to_reach  # noqa: E402
from skdcgn.metrics.fidelity import HEADLINE, SOFT_BAND  # noqa: E402
from skdcgn.utils.atomic import atomic_file  # noqa: E402

RESULTS = Path("results")
SHAPE_STUDENT = STUDENT.format(im="shape")
LOSS_STUDIES = ("kl", "kl_place", "pixel", "objective")
MASK_STUDY, EDGES_STUDY, DENOISE_STUDY, TRANSPARENT_STUDY, DATA_STUDY, SCALE_STUDY = (
    "masks", "edges", "denoise", "transparent", "data", "scale")
# SKDCGN paper, Table 1: real-vs-counterfactual classifier, train / test accuracy in %.
PAPER_TABLE1 = {"noise": (99.9, 14.96), "rotation": (99.1, 13.51), "transparency": (94.7, 58.86)}
UNITS = {"mask_iou": "IoU", "psnr": "PSNR dB"}
DIGITS = {"mask_iou": 3, "psnr": 2}
# Forward batches (docs/pipeline.md: batch sizes): runs that differ in them alone are one variant, so that a
# study queued after a change of batch size still pairs with the baseline runs made before it.
SPEED_ONLY = ("generate.batch_size", "compose.batch_size")


def _leaf(tree: dict, *keys: str):
    for key in keys:
        tree = tree.get(key, {}) if isinstance(tree, dict) else {}
    return tree if isinstance(tree, (int, float)) else None


def variants(runs: dict[str, Run], teacher: str, study: str, baseline: Run) -> dict[str, Run]:
    """Variant -> the runs of `teacher` with that variant's params over `baseline`'s, pooled over seeds (the
    newest run of each seed); variants never run are left out."""
    found = {}
    for variant, changes in STUDIES[study].items():
        match = seed_group(runs, teacher, merged(baseline.params, nested(changes)))
        if match:
            found[variant] = match
    return found


def seed_group(runs: dict[str, Run], teacher: str, params: dict) -> Run | None:
    """The runs of `teacher` whose params are `params` but for the seed and SPEED_ONLY, newest per seed, pooled."""
    own = sorted((run for name, run in runs.items() if name.startswith(f"{teacher}-")),
                 key=lambda run: run.age)
    by_seed: dict[int, Run] = {}
    for run in own:
        if _variant_params(run.params) == _variant_params(params):
            by_seed.setdefault(run.params.get("seed", 0), run)
    return pooled([by_seed[seed] for seed in sorted(by_seed)]) if by_seed else None


def _variant_params(params: dict) -> dict:
    """What tells variants apart: what a run computes (each student's own objective laid over the shared one,
    pipeline.studies.effective), whichever keys said it, but for the seed and those that change speed alone."""
    return _settings(json.dumps(params, sort_keys=True))


@functools.cache  # a report compares every record with every variant of every study
def _settings(params: str) -> dict:
    return _given(effective(json.loads(params)))


def _given(params: dict) -> dict:
    """Every setting in `params` but the seed and those that change speed alone, by dotted key."""
    return {key: value for key, value in flat(params) if key != "seed" and key not in SPEED_ONLY}


def baseline_groups(runs: dict[str, Run], teacher: str) -> list[Run]:
    """The distinct baselines of `teacher` (runs named `<teacher>-baseline[-seed<k>]`, old ones included), newest
    first, each pooled over its seeds."""
    name = re.compile(rf"{re.escape(teacher)}-baseline(-seed\d+)?")
    groups: list[Run] = []
    for run in sorted(runs.values(), key=lambda run: run.age):
        if name.fullmatch(run.name) and all(_variant_params(run.params) != _variant_params(group.params)
                                            for group in groups):
            groups.append(seed_group(runs, teacher, run.params))
    return groups


def paired_studies(runs: dict[str, Run], teacher: str, groups: list[Run]) -> list[dict[str, dict[str, Run]]]:
    """Per baseline of `groups` (in their order): study -> variant -> run, for each study that ran a variant other
    than that baseline itself against it. A study that never did shows with the newest baseline (its tables show
    the baseline alone)."""
    paired: list[dict[str, dict[str, Run]]] = [{} for _ in groups]
    for study in STUDIES:
        found = [variants(runs, teacher, study, group) for group in groups]
        ran = [index for index, (group, there) in enumerate(zip(groups, found))
               if any(run.rev != group.rev for run in there.values())]
        for index in ran or [0]:
            paired[index][study] = found[index]
    return paired


def study_runs(baseline: Run, found: dict[str, dict[str, Run]], studies=tuple(STUDIES)) -> dict[str, tuple[str, Run]]:
    """Label -> (study, run) of every distinct run among `found` (study -> variant -> run) for `studies`, the
    baseline first."""
    shown = {"baseline": ("", baseline)}
    revs = {baseline.rev}
    for study in studies:
        for variant, run in found.get(study, {}).items():
            if run.rev not in revs:
                revs.add(run.rev)
                shown[variant] = (study, run)
    return shown


def steps_to_common(variant: list[tuple[int, float]], control: list[tuple[int, float]], floor: float,
                    fraction: float = 0.95) -> tuple[int, int]:
    """Steps each run needs to win `fraction` of the gain from the class-mean `floor` to the lower of their two
    final values: one target that both reached, so "converges faster" compares like with like, and not so close
    to the end that a last wobble decides."""
    target = common_target(variant, control, floor, fraction)
    return steps_to_reach(variant, target), steps_to_reach(control, target)


def common_target(variant: list[tuple[int, float]], control: list[tuple[int, float]], floor: float,
                  fraction: float = 0.95) -> float:
    return floor + fraction * (min(variant[-1][1], control[-1][1]) - floor)


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The seeds' curves (evaluated at the same steps) averaged step by step."""
    return [(points[0][0], statistics.fmean(value for _, value in points)) for points in zip(*curves)]


def _floor(run: Run, im: str) -> float:
    return run.student(im)["baseline"][HEADLINE[im]]


def _common_steps(run: Run, control: Run, im: str, curves: dict) -> tuple[int, int]:
    """Steps of the seed-mean curves of `run` and `control` to their common target."""
    return steps_to_common(mean_curve(curves[run.rev][im]), mean_curve(curves[control.rev][im]), _floor(control, im))


def _steps_per_seed(run: Run, control: Run, im: str, curves: dict) -> tuple[list[int], list[int]]:
    """Each seed's steps to the common target of the seed-mean curves: the spread of the convergence figure. A
    seed that never reaches that target (its own curve ends below the mean) counts its last step, as
    steps_to_gain counts a run that never beats its baseline."""
    target = common_target(mean_curve(curves[run.rev][im]), mean_curve(curves[control.rev][im]), _floor(control, im))
    return tuple([steps_to_reach(c, target) or c[-1][0] for c in curves[side.rev][im]] for side in (run, control))


def below(a: list[float], b: list[float]) -> bool:
    """Whether `a` lies below `b` by more than the seed spread: its mean plus one standard deviation under `b`'s
    mean minus one (a single seed has no spread, so any difference counts)."""
    return statistics.fmean(a) + _spread(a) < statistics.fmean(b) - _spread(b)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _cell(run: Run, file: str, *keys: str, digits: int = 3) -> str:
    """A metric of `run`: its mean over seeds, then ± the standard deviation when several seeds ran."""
    spread = _leaf(run.spread, file, *keys)
    return _number(_leaf(run.metrics, file, *keys), digits) + (
        f" ± {spread:,.{digits}f}" if run.members and spread is not None else "")


def student_over_teacher(run: Run) -> list[float]:
    """Per seed: OOD accuracy of the classifier on the students' counterfactuals over the one on the teacher's
    (evaluate over reference); a seed whose teacher counterfactuals taught nothing has no ratio."""
    return [student / teacher for student, teacher in zip(_accuracies(run, "student"), _accuracies(run, "teacher"))
            if student is not None and teacher]


def _ratio_cell(run: Run) -> str:
    """student_over_teacher as a cell: the mean over seeds, ± their standard deviation when several ran."""
    ratios = student_over_teacher(run)
    if len(ratios) < len(run.runs):
        return "n/a"
    return _spread_cell(ratios, 3)


def _fidelity_cell(run: Run, im: str, samples: str) -> str:
    """A student's headline fidelity on `samples`: heldout, or train_samples (as many of those it trained on)."""
    return _cell(run, STUDENT.format(im=im), samples, HEADLINE[im], digits=DIGITS[HEADLINE[im]])


def mean_image_section(baseline: Run) -> list[str]:
    """Each student of `baseline` against the class-mean baseline (its class's mean teacher image) on the same
    held-out samples: the gain per seed, so that a student left at the class mean shows as one."""
    lines = ["| student | seeds | class mean | student | gain |", "|---" * 5 + "|"]
    learned, stayed = [], []
    for im in IMS:
        key, digits = HEADLINE[im], DIGITS[HEADLINE[im]]
        pairs = list(zip(_per_seed(baseline, STUDENT.format(im=im), "heldout", key),
                         _per_seed(baseline, STUDENT.format(im=im), "baseline", key)))
        if any(None in pair for pair in pairs):  # a record made before the class-mean baseline was measured
            continue
        gains = [student - mean for student, mean in pairs]
        (learned if statistics.fmean(gains) > _spread(gains) else stayed).append(im)
        cells = [_cell(baseline, STUDENT.format(im=im), "baseline", key, digits=digits),
                 _fidelity_cell(baseline, im, "heldout")]  # the pooled run's means and spreads
        lines.append(f"| {im} ({UNITS[key]}) | {len(pairs)} | " + " | ".join(cells)
                     + f" | {_spread_cell(gains, digits, sign='+')} |")
    if not learned and not stayed:
        return []
    said = [f"Above the class mean beyond the spread: {', '.join(learned) or 'none'}",
            *([f"at the class mean: {', '.join(stayed)}"] if stayed else [])]
    return ["### The students against the class-mean baseline", "",
            "Class mean: each held-out sample predicted by its class's mean teacher image (what a student that "
            "learned only the label would give); gain: student minus class mean, per seed.", "", *lines, "",
            f"- {'; '.join(said)}.", ""]


def _spread_cell(values: list[float], digits: int, sign: str = "") -> str:
    """The mean of `values` (one per seed), ± their standard deviation when several."""
    spread = f" ± {statistics.stdev(values):,.{digits}f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):{sign},.{digits}f}{spread}"


def _changes(study: str, variant: str, baseline: Run | None = None) -> str:
    """A variant's overrides; over `baseline`, only those that change what it computes."""
    changes = STUDIES[study][variant]
    if baseline is not None:
        changes = needed(baseline.params, changes)
    return ", ".join(setting(k, v) for k, v in changes.items()) or "(baseline)"


def loss_tables(baseline: Run, found: dict[str, dict[str, Run]], curves: dict) -> list[str]:
    """Final fidelity per student (steps to 95 % of its gain) and steps to a common target against the
    baseline, one row per loss variant."""
    rows = [(variant, _changes(study, variant, baseline) if study else "(the teacher's own params)", run)
            for variant, (study, run) in study_runs(baseline, found, LOSS_STUDIES).items()]
    head = [f"{im} {UNITS[HEADLINE[im]]} (steps to 95 %)" for im in IMS]
    # The columns after the students': heading, then a run's cell. Soft mask pixels only where some run measured
    # them (records made before that metric have none).
    tail = [("OOD accuracy", lambda run: _cell(run, EVALUATE, "student", "accuracy")),
            ("student / teacher", _ratio_cell),
            ("real vs CF test", lambda run: _cell(run, EVALUATE, "real_vs_counterfactual", "test_accuracy"))]
    if any(_leaf(run.metrics, SHAPE_STUDENT, "heldout", "mask_soft") is not None for *_, run in rows):
        tail.append(("soft mask pixels", lambda run: _cell(run, SHAPE_STUDENT, "heldout", "mask_soft", digits=4)))
    lines = ["| variant | overrides | seeds | " + " | ".join(head + [heading for heading, _ in tail]) + " |",
             "|---" * (len(head) + len(tail) + 3) + "|"]
    for variant, changes, run in rows:
        cells = [f"{_fidelity_cell(run, im, 'heldout')} "
                 f"({_number(_leaf(run.metrics, STUDENT.format(im=im), 'steps_to_95pct_gain'), 0)})" for im in IMS]
        lines.append(f"| {variant} | `{changes}` | {len(run.runs)} | "
                     + " | ".join(cells + [cell(run) for _, cell in tail]) + " |")
    lines += teacher_realism(baseline)
    if len(rows) == 1:  # the baseline alone: nothing to compare its steps with
        return lines
    lines += ["", "Steps to 95 % of the gain over the class-mean baseline up to the lower of the two final values, "
              "variant / baseline (fewer = converges faster):", "",
              "| variant | " + " | ".join(IMS) + " |", "|---" * (len(IMS) + 1) + "|"]
    for variant, _, run in rows[1:]:
        cells = ["{} / {}".format(*_common_steps(run, baseline, im, curves)) for im in IMS]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def verdicts(baseline: Run, found: dict[str, dict[str, Run]], curves: dict) -> list[str]:
    """The paper's two loss claims, judged on the headline fidelity of each student."""
    lines = []
    kl_runs = found.get("kl", {})
    kl = kl_runs.get("kl-1")
    if kl and kl.rev != baseline.rev:
        control = kl_runs.get("kl-0", baseline)
        faster = [im for im in IMS if below(*_steps_per_seed(kl, control, im, curves))]
        lines.append(f"- *KL helps the students converge*: with kl_weight 1 (on {kl.params['loss']['kl_on']}) "
                     f"{len(faster)} of 3 students "
                     f"reach the common target in fewer steps ({', '.join(faster) or 'none'}): "
                     f"{'held' if len(faster) >= 2 else 'not held'}.")
    pixel = found.get("pixel", {})
    if {"l1", "l2"} <= set(pixel):
        worse = ended_lower(pixel["l2"], pixel["l1"])
        lines.append(f"- *L2 is worse than L1*: L2 ends lower on {len(worse)} of 3 students "
                     f"({', '.join(worse) or 'none'}): {'held' if len(worse) >= 2 else 'not held'}.")
    shape_l1, shape_l2 = pixel.get("l1-shape"), pixel.get("l2-shape")
    if shape_l1 and shape_l2 and shape_l2.rev != shape_l1.rev:
        lines.append(f"- *L2 for the shape student alone* (l2-shape vs {_row(baseline, 'l1-shape', shape_l1)}): "
                     f"{_outcome(shape_l2, shape_l1)}.")
    return lines + objective_verdicts(baseline, found.get("objective", {}))


def _row(baseline: Run, variant: str, run: Run) -> str:
    """The loss table's row label of `variant`: study_runs shows a variant equal to the baseline as the baseline."""
    return "baseline" if run.rev == baseline.rev else variant


def objective_verdicts(baseline: Run, objective: dict[str, Run]) -> list[str]:
    """What the adversarial and feature terms do to each student, for all three at once, for the colour students
    alone and for the shape alone, against every student on the pixel loss alone."""
    control, lines = objective.get("pixel-only"), []
    if control is None:
        return lines
    versus = f"vs {_row(baseline, 'pixel-only', control)}"
    full = objective.get("full")
    if full and full.rev != control.rev:
        helped = set(ended_lower(control, full))
        lines.append(f"- *The adversarial and feature terms help the colour students* (full {versus}): "
                     f"{_outcome(full, control)}: "
                     f"{'held' if {'texture', 'background'} <= helped else 'not held'}.")
    for variant, students in (("per-mechanism", "the colour students"), ("shape-full", "the shape student")):
        run = objective.get(variant)
        if run and run.rev != control.rev:
            lines.append(f"- *The full objective for {students} alone* ({_row(baseline, variant, run)} {versus}): "
                         f"{_outcome(run, control)}.")
    return lines


def ended_lower(variant: Run, control: Run) -> list[str]:
    """The students whose final fidelity in `variant` lies below `control`'s by more than the seed spread."""
    return [im for im in IMS if below([run.final(im) for run in variant.runs],
                                      [run.final(im) for run in control.runs])]


def _outcome(variant: Run, control: Run) -> str:
    higher, lower = ended_lower(control, variant), ended_lower(variant, control)
    same = [im for im in IMS if im not in higher + lower]
    parts = [f"{word} on {', '.join(ims)}" for word, ims in
             (("higher", higher), ("lower", lower), ("no difference beyond the spread", same)) if ims]
    return "; ".join(parts)


def mask_table(masks: dict[str, Run]) -> list[str]:
    """Table 1 of the SKDCGN paper, with the invariant classifier's OOD accuracy beside it."""
    lines = ["| mask change | overrides | real vs CF train | real vs CF test | paper train / test (%) "
             "| OOD accuracy | same-colour accuracy |", "|---" * 7 + "|"]
    for variant, run in masks.items():
        paper = " / ".join(map(str, PAPER_TABLE1[variant])) if variant in PAPER_TABLE1 else ""
        lines.append(f"| {variant} | `{_changes(MASK_STUDY, variant)}` "
                     f"| {_cell(run, EVALUATE, 'real_vs_counterfactual', 'train_accuracy')} "
                     f"| {_cell(run, EVALUATE, 'real_vs_counterfactual', 'test_accuracy')} | {paper} "
                     f"| {_cell(run, EVALUATE, 'student', 'accuracy')} "
                     f"| {_cell(run, EVALUATE, 'student', 'accuracy_same_colour')} |")
    return lines


def teacher_realism(baseline: Run) -> list[str]:
    """A paragraph (a blank line before it) with the realism figures of the teacher's own counterfactuals
    (reference), where the baseline measured them: what the students' real-vs-CF figures read against."""
    said = []
    if _leaf(baseline.metrics, REFERENCE, "real_vs_counterfactual", "test_accuracy") is not None:
        said.append(f"The teacher's own counterfactuals against the same real images (stage reference, the "
                    f"baseline's masks): train {_cell(baseline, REFERENCE, 'real_vs_counterfactual', 'train_accuracy')}"
                    f", test {_cell(baseline, REFERENCE, 'real_vs_counterfactual', 'test_accuracy')}.")
    if _leaf(baseline.metrics, SHAPE_STUDENT, "heldout", "mask_soft_target") is not None:
        said.append(f"Soft mask pixels (values between {SOFT_BAND[0]} and {SOFT_BAND[1]}: a blend of foreground and "
                    f"background) in the teacher's held-out masks: "
                    f"{_cell(baseline, SHAPE_STUDENT, 'heldout', 'mask_soft_target', digits=4)}.")
    return ["", " ".join(said)] if said else []


def edges_section(edges: dict[str, Run]) -> list[str]:
    """Do grey edges give counterfactuals away by themselves? Real vs counterfactual with the students' masks,
    the real digits' masks or both blurred, each against the crisp control beyond the seed spread."""
    control = edges.get("crisp")
    if control is None:
        return []
    # A variant that computes what the control does (real-blur without real digits) is the control's own runs.
    edges = {variant: run for variant, run in edges.items() if run is control or run.rev != control.rev}
    if len(edges) < 2:
        return []
    lines = ["| blurred | overrides | seeds | real vs CF test: students | real vs CF test: teacher "
             "| OOD accuracy: students | OOD accuracy: teacher |", "|---" * 7 + "|"]
    for variant, run in edges.items():
        lines.append(f"| {variant} | `{_changes(EDGES_STUDY, variant)}` | {len(run.runs)} "
                     f"| {_cell(run, EVALUATE, 'real_vs_counterfactual', 'test_accuracy')} "
                     f"| {_cell(run, REFERENCE, 'real_vs_counterfactual', 'test_accuracy')} "
                     f"| {_cell(run, EVALUATE, 'student', 'accuracy')} "
                     f"| {_cell(run, REFERENCE, 'teacher', 'accuracy')} |")
    realism = {variant: _per_seed(run, EVALUATE, "real_vs_counterfactual", "test_accuracy")
               for variant, run in edges.items()}
    said = [f"{variant} {_direction(values, realism['crisp'])}" for variant, values in realism.items()
            if variant != "crisp" and None not in values + realism["crisp"]]
    return ["### Grey edges: the students' masks, the real digits' masks, or both blurred", "",
            "Real = the OOD test images, real digits whose masks the CGN protocol thresholds to 0 or 1 "
            "(`evaluate.real_mask_blur` blurs them, and the factual real set alike); counterfactuals = the "
            "students' (`compose.mask_blur` blurs their masks) or, in the teacher column, the teacher's, never "
            "blurred (stage reference). Test accuracy 0.5: indistinguishable.", "", *lines, "",
            *([f"- The students' real vs CF test accuracy against crisp: {'; '.join(said)}.", ""] if said else [])]


def _direction(values: list[float], control: list[float]) -> str:
    if below(control, values):
        return "higher"
    return "lower" if below(values, control) else "no difference beyond the spread"


def denoise_table(denoise: dict[str, Run]) -> list[str]:
    lines = ["| masks | teacher CFs: OOD accuracy | student CFs: OOD accuracy | student / teacher |",
             "|---" * 4 + "|"]
    for variant, run in denoise.items():
        lines.append(f"| {variant} | {_cell(run, REFERENCE, 'teacher', 'accuracy')} "
                     f"| {_cell(run, EVALUATE, 'student', 'accuracy')} | {_ratio_cell(run)} |")
    return lines


def transparency_section(baseline: Run, transparent: dict[str, Run]) -> list[str]:
    """Claim (e): a transparent mask on the teacher's counterfactuals raised the invariant classifier's OOD
    accuracy. Held where a transparency's teacher-counterfactual accuracy is above the opaque baseline's beyond
    the seed spread."""
    found = {"opaque": baseline, **transparent}
    if len(found) == 1:
        return []
    lines = ["| masks | overrides | seeds | teacher CFs: OOD accuracy | student CFs: OOD accuracy |", "|---" * 5 + "|"]
    for variant, run in found.items():
        changes = _changes(TRANSPARENT_STUDY, variant) if variant in STUDIES[TRANSPARENT_STUDY] else "(baseline)"
        lines.append(f"| {variant} | `{changes}` | {len(run.runs)} | {_cell(run, REFERENCE, 'teacher', 'accuracy')} "
                     f"| {_cell(run, EVALUATE, 'student', 'accuracy')} |")
    higher = [variant for variant, run in found.items()
              if variant != "opaque" and below(_accuracies(found["opaque"], "teacher"), _accuracies(run, "teacher"))]
    verdict = (f"- *A transparent mask raises the invariant classifier's OOD accuracy* (claim (e)): above the opaque "
               f"masks' beyond the seed spread for {', '.join(higher) or 'no transparency'}: "
               f"{'held' if higher else 'not held'}.")
    return ["### Claim (e): transparent masks on the teacher's counterfactuals and the students'", "", *lines, "",
            verdict, ""]


def scale_section(baseline: Run, transparent: dict[str, Run], scale: dict[str, Run]) -> list[str]:
    """The CGN paper's N: the invariant classifier, opaque and with claim (e)'s transparent masks, on PAPER_N
    counterfactuals beside the baseline's. A figure of one seed at PAPER_N borrows the seed spread of the same
    masks at the baseline's N, so a difference counts only where it is larger than a change of seed there."""
    if not scale:
        return []
    small = {"opaque": baseline, **transparent}
    large = {variant.removeprefix(f"n-{PAPER_N}").removeprefix("-") or "opaque": run for variant, run in scale.items()}
    lines = ["| counterfactuals | masks | seeds | teacher CFs: OOD accuracy | student CFs: OOD accuracy "
             "| student / teacher |", "|---" * 6 + "|"]
    for n, runs in ((baseline.params["compose"]["n"], small), (PAPER_N, large)):
        lines += [f"| {n:,} | {masks} | {len(run.runs)} | {_cell(run, REFERENCE, 'teacher', 'accuracy')} "
                  f"| {_cell(run, EVALUATE, 'student', 'accuracy')} | {_ratio_cell(run)} |" for masks, run in runs.items()]

    def spread(masks: str, side: str) -> float:
        """The seed spread of these masks' accuracy: its own over seeds, else the same masks' at the baseline N."""
        own = _accuracies(large[masks], side)
        return _spread(own) if len(own) > 1 else _spread(_accuracies(small.get(masks, baseline), side))

    def versus(run: Run, masks: str, control: Run, control_masks: str, side: str) -> tuple[float, bool]:
        """The difference in mean accuracy, and whether it is larger than the two spreads together."""
        difference = statistics.fmean(_accuracies(run, side)) - statistics.fmean(_accuracies(control, side))
        return difference, abs(difference) > spread(masks, side) + spread(control_masks, side)

    def said(difference: float, beyond: bool) -> str:
        return f"{difference:+.3f}, " + (("higher" if difference > 0 else "lower") if beyond else "within the spread")

    verdicts = []
    if "opaque" in large:
        opaque = large["opaque"]
        verdicts.append(f"- *The invariant classifier at {PAPER_N:,} counterfactuals* against "
                        f"{baseline.params['compose']['n']:,}: on the teacher's "
                        f"{said(*versus(opaque, 'opaque', baseline, 'opaque', 'teacher'))}; on the students' "
                        f"{said(*versus(opaque, 'opaque', baseline, 'opaque', 'student'))}.")
        compared = {masks: versus(run, masks, opaque, "opaque", "teacher") for masks, run in large.items()
                    if masks != "opaque"}
        higher = [masks for masks, (difference, beyond) in compared.items() if beyond and difference > 0]
        verdicts.append(f"- *Claim (e) at {PAPER_N:,} counterfactuals*: the teacher's counterfactuals give a higher OOD "
                        f"accuracy than with opaque masks, beyond the seed spread, for "
                        f"{', '.join(higher) or 'no transparency'}: {'held' if higher else 'not held'}.")
    return [f"### The CGN paper's N: {PAPER_N:,} counterfactuals", "",
            "Seeds: the runs a row pools. A figure of one seed counts a difference only beyond the spread of the "
            "same masks over the seeds at the smaller N.", "", *lines, "", *verdicts, ""]


def _per_seed(run: Run, file: str, *keys: str) -> list[float | None]:
    """One metric of each seed's run, None where a record lacks it."""
    return [_leaf(member.metrics, file, *keys) for member in run.runs]


def _accuracies(run: Run, side: str) -> list[float]:
    """Per seed: the invariant classifier's OOD accuracy on the teacher's (reference) or the students'
    (evaluate) counterfactuals."""
    return _per_seed(run, REFERENCE if side == "teacher" else EVALUATE, side, "accuracy")


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def data_section(data: dict[str, Run]) -> list[str]:
    """Data efficiency: each student's fidelity on held-out samples and on as many of its training samples, and
    the invariant classifier's OOD accuracy, against the teacher samples per class it learned from."""
    found = sorted(data.values(), key=lambda run: run.params["generate"]["per_class"])
    if len(found) < 2:
        return []
    head = [f"{im} {UNITS[HEADLINE[im]]}: held-out / train" for im in IMS]
    lines = ["| teacher samples per class | seeds | " + " | ".join(head) + " | OOD accuracy | student / teacher |",
             "|---" * (len(head) + 4) + "|"]
    for run in found:
        cells = [f"{_fidelity_cell(run, im, 'heldout')} / {_fidelity_cell(run, im, 'train_samples')}" for im in IMS]
        lines.append(f"| {run.params['generate']['per_class']:,} | {len(run.runs)} | " + " | ".join(cells)
                     + f" | {_cell(run, EVALUATE, 'student', 'accuracy')} | {_ratio_cell(run)} |")
    return ["### Data efficiency: teacher samples per class", "",
            "Train: the same measure on as many of the samples the student trained on (the first of its training "
            "set) as there are held-out ones; where it lies above the held-out figure, the student memorised what "
            "it did not learn.", "", *lines, ""]


def plot_curves(path: Path, named_curves: dict[str, dict[str, list]]) -> None:
    """One panel per student: headline fidelity against steps, a line per variant."""
    figure, axes = plt.subplots(1, len(IMS), figsize=(5 * len(IMS), 3.6))
    for axis, im in zip(axes, IMS):
        for name, curves in named_curves.items():
            steps, values = zip(*curves[im])
            axis.plot(steps, values, label=name, linewidth=1.2)
        axis.set(title=im, xlabel="step", ylabel=UNITS[HEADLINE[im]])
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_grids(path: Path, grids: dict[str, bytes]) -> None:
    """The counterfactual grids of the mask variants side by side."""
    figure, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.4), squeeze=False)
    for axis, (name, png) in zip(axes[0], grids.items()):
        axis.imshow(Image.open(io.BytesIO(png)))
        axis.set_title(name)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def commands(baseline: Run, found: dict[str, dict[str, Run]], defaults: dict) -> list[str]:
    """The `dvc exp run` line of each run in a section, from its params against params.yaml's."""
    base = dict(flat(defaults))
    lines = []
    for _, pooled_run in study_runs(baseline, found).values():
        for run in pooled_run.runs:  # every seed's
            changed = [override(k, v, set(base)) for k, v in flat(run.params) if base.get(k) != v]
            lines.append(" ".join([f"dvc exp run -n {run.name}", *(f"-S {c}" for c in changed)]))
    return lines


def teacher_section(runs: dict[str, Run], teacher: str, out: Path, defaults: dict) -> list[str]:
    """One section per baseline that a study pairs with (the newest always), each with its studies' tables."""
    groups = baseline_groups(runs, teacher)
    paired = paired_studies(runs, teacher, groups)
    lines = []
    for index, (baseline, found) in enumerate(zip(groups, paired)):
        if index == 0:
            lines += [f"## Teacher: {teacher}", ""]
        elif found:
            lines += [f"## Teacher: {teacher}, studies against an earlier baseline", "",
                      "Made before the baseline last changed. Its settings that differ from the current baseline's: "
                      + _differences(baseline.params, groups[0].params) + ".", ""]
        else:
            continue
        stem = teacher + (f"-{baseline.rev[:7]}" if index else "")
        lines += baseline_section(baseline, found, out / "figures", stem, defaults, newest=index == 0)
    return lines


def baseline_section(baseline: Run, found: dict[str, dict[str, Run]], figures: Path, name: str, defaults: dict,
                     newest: bool) -> list[str]:
    """The tables of the studies in `found` (study -> variant -> run) against `baseline`; the newest baseline
    always shows its own fidelity, its masks and its denoising row."""
    figures.mkdir(parents=True, exist_ok=True)
    lines = []
    if newest or any(study in found for study in LOSS_STUDIES):
        trained = {label: run for label, (_, run) in study_runs(baseline, found, LOSS_STUDIES).items()}
        curves = {run.rev: {im: [member.curves[im] for member in run.runs] for im in IMS}
                  for run in trained.values()}
        named = {label: {im: mean_curve(curves[run.rev][im]) for im in IMS} for label, run in trained.items()}
        plot_curves(figures / f"{name}-curves.png", named)
        heldout = baseline.params["generate"]["heldout_per_class"]
        lines += [f"### Loss ablations: fidelity of each student on {heldout} held-out teacher samples per class", "",
                  *loss_tables(baseline, found, curves), "", *verdicts(baseline, found, curves), "",
                  f"![fidelity against steps]({figures.name}/{name}-curves.png)", ""]
    if newest:
        lines += mean_image_section(baseline)
    if MASK_STUDY in found:
        grids = {variant: run.grid.read_bytes() for variant, run in found[MASK_STUDY].items() if run.grid}
        if grids:  # a record without a grid (its run made none) still has its table row
            plot_grids(figures / f"{name}-masks.png", grids)
        lines += ["### Shape mechanism: masks changed at composition (SKDCGN Table 1)", "",
                  "Real = the OOD test images (random colours); counterfactuals = the students'. The invariant "
                  "classifier is trained on the changed counterfactuals and tested on the OOD set.", "",
                  *mask_table(found[MASK_STUDY]), *teacher_realism(baseline), "",
                  *([f"![counterfactuals per mask change]({figures.name}/{name}-masks.png)", ""] if grids else [])]
    lines += edges_section(found.get(EDGES_STUDY, {}))
    if DENOISE_STUDY in found:
        lines += ["### Mask denoising (3x3 median) of teacher and student counterfactuals", "",
                  *denoise_table(found[DENOISE_STUDY]), ""]
    return [*lines, *transparency_section(baseline, found.get(TRANSPARENT_STUDY, {})),
            *scale_section(baseline, found.get(TRANSPARENT_STUDY, {}), found.get(SCALE_STUDY, {})),
            *data_section(found.get(DATA_STUDY, {})),
            "Commands of these runs:", "", "```", *commands(baseline, found, defaults), "```", ""]


def _differences(params: dict, current: dict) -> str:
    """`key` value here (now value) for each param, as given, that tells two baselines apart."""
    here, now = _given(params), _given(current)

    def shown(tree: dict, key: str) -> str:
        return f"`{flow(tree[key])}`" if key in tree else "unset"
    return ", ".join(f"`{key}` {shown(here, key)} (now {shown(now, key)})"
                     for key in sorted(here.keys() | now.keys()) if here.get(key) != now.get(key))


def write_report(runs: dict[str, Run], teachers: list[str], out: Path, defaults: dict) -> Path:
    missing = [t for t in teachers if f"{t}-baseline" not in runs]
    if missing:
        raise SystemExit(f"error: no experiment {missing[0]}-baseline; queue the studies first "
                         f"(python -m pipeline.studies) or pick one of: {', '.join(baselines(runs)) or 'none'}")
    lines = ["# SKDCGN studies", "", "Generated by `python -m pipeline.report` from the DVC experiments queued by "
             "`python -m pipeline.studies` (docs/studies.md). Fidelity: mask IoU for shape, PSNR for texture and "
             "background; steps to 95 %: the first evaluation (every `train.eval_every` steps) at which a student "
             "had won 95 % of its final gain over the class-mean baseline. Where a variant ran at several seeds "
             "(`python -m pipeline.studies --seeds N`), a figure is the mean ± the standard deviation over its seeds "
             "(steps: of the mean curve), and a verdict counts a difference only where the two ranges of mean ± one "
             "standard deviation do not overlap; at one seed there is no spread, and any difference counts.", ""]
    for teacher in teachers:
        lines += teacher_section(runs, teacher, out, defaults)
    report = "\n".join(lines)
    # A failed run leaves the last whole report, never half of a new one.
    with atomic_file(out / "report.md") as partial:
        partial.write_text(report)
    drop_unused_figures(out / "figures", report)
    return out / "report.md"


def drop_unused_figures(figures: Path, report: str) -> None:
    """Delete the figures `report` no longer shows (a section renamed when its baseline changed), so that what is
    committed under results/ is what the report reads."""
    for path in figures.glob("*.png"):
        if f"{figures.name}/{path.name}" not in report:
            path.unlink()


def baselines(runs: dict[str, Run]) -> list[str]:
    return sorted(name.removesuffix("-baseline") for name in runs if name.endswith("-baseline"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", help="experiment name prefix (default: every baseline)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--runs", type=Path, default=RUNS, help="the run records (default: %(default)s)")
    args = parser.parse_args(argv)
    written = archive(dvc.api.exp_show(num=-1), args.runs)
    print(f"recorded {len(written)} new runs in {args.runs}", file=sys.stderr)
    runs = load(args.runs)
    defaults = yaml.safe_load(PARAMS_FILE.read_text())
    path = write_report(runs, args.teacher or baselines(runs), args.out, defaults)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
