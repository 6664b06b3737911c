"""A student's model card: what it imitates, how it was trained, how faithful it is, how to load it.

The distill stage writes it beside `student.pt`, so it travels with the model wherever DVC takes it
(`dvc artifacts get . student-<im>`). Everything in it comes from the run itself: no figure is typed by hand.
"""

from __future__ import annotations

from skdcgn.mechanisms import CHANNELS, VALUE_RANGE

ROLE = {"shape": "the mask m", "texture": "the foreground f", "background": "the background b"}


def model_card(config: dict, teacher: dict, parameters: tuple[int, int], training: dict,
               fidelity: dict[str, float], baseline: dict[str, float], headline: str) -> str:
    """Markdown for a student of `config` (StudentGenerator.config) distilled from `teacher` (its identity):
    `parameters` the student's and the teacher mechanism's, `training` the settings that made it, `fidelity`
    and `baseline` its held-out metrics and the class-mean baseline's, `headline` the metric that judges this
    mechanism."""
    im, size = config["im"], teacher["image_size"]
    lo, hi = VALUE_RANGE[im]
    z_dim = teacher["z_dims"][im]
    student_parameters, teacher_parameters = parameters
    lines = [
        f"# SKDCGN student: {im}",
        "",
        f"A TinyGAN-style generator that imitates the {im} mechanism of a `{teacher['kind']}` teacher: from noise "
        f"z ({z_dim}-d) and a class y (0..{teacher['num_classes'] - 1}) it renders {ROLE[im]} of a counterfactual "
        f"x = m * f + (1 - m) * b, {CHANNELS[im]}x{size}x{size} in [{lo:g}, {hi:g}]. It was trained on stored "
        "teacher samples alone (source-free distillation).",
        "",
        "| | |",
        "|---|---|",
        f"| teacher | {_fields(teacher)}; {teacher_parameters:,} parameters for this mechanism |",
        f"| student | {student_parameters:,} parameters{_share(student_parameters, teacher_parameters)}; "
        f"{_fields({k: v for k, v in config.items() if k != 'im'})} |",
        f"| training | {_fields(training)} |",
        "",
        f"Held-out fidelity on teacher samples it never saw, next to the baseline that predicts each class's mean "
        f"teacher image (a student must beat it to have learned more than its class); `{headline}` is the headline:",
        "",
        "| metric | student | class-mean baseline |",
        "|---|---|---|",
        *(f"| {name} | {fidelity[name]:.4g} | {baseline[name]:.4g} |" for name in fidelity if name in baseline),
        "",
        "## Use it",
        "",
        "```python",
        "import torch",
        "from skdcgn.distillation.checkpoints import load_student",
        "from skdcgn.teachers.noise import draw_noise",
        "",
        'student, teacher = load_student("student.pt", "cpu")  # eval mode; teacher: the identity above',
        f"z = draw_noise(8, {z_dim}, torch.Generator().manual_seed(0), teacher.get(\"truncation\"))",
        f"images = student(z, torch.full((8,), {min(3, teacher['num_classes'] - 1)}))  # (8, {CHANNELS[im]}, "
        f"{size}, {size})",
        "```",
        "",
        "With the two other students in `data/students/`: `skdcgn sample --n 64 --grid counterfactuals.png`.",
        "",
    ]
    return "\n".join(lines)


def _share(student: int, teacher: int) -> str:
    """The student's size as a multiple of the teacher's; a teacher of no parameters (a formula) has none."""
    return f" ({student / teacher:.2g}x the teacher's)" if teacher else ""


def _fields(values: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())
