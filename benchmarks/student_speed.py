"""Student speed: counterfactuals/s drawn by the three students against the same counterfactuals from the teacher.

The point of distillation: students should be much cheaper than the teacher. Untrained students of the
configured widths are timed (speed does not depend on the weights), on the same inputs, batch and device,
without writing shards. Usage: python -m benchmarks.student_speed [--profile ... --set ...]
"""

from __future__ import annotations

from benchmarks.common import arguments, best_seconds, report, setup, teacher_on
from skdcgn.counterfactuals.composite import render_all
from skdcgn.counterfactuals.inputs import counterfactual_inputs
from skdcgn.distillation.students import StudentGenerator, count_parameters
from skdcgn.mechanisms import IMS


def main() -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    params, device = setup(args)
    teacher = teacher_on(params, device)
    n, batch = params.compose.n, params.compose.batch_size
    students = {im: StudentGenerator(im, teacher.z_dims[im], teacher.num_classes, teacher.image_size,
                                     params.train_for(im).student_widths,
                                     params.train_for(im).class_embedding).to(device).eval() for im in IMS}
    inputs = counterfactual_inputs(teacher.z_dims, teacher.num_classes, n, params.seed,
                                   truncation=teacher.truncation)
    rates = {"students": n / best_seconds(lambda: render_all(students, inputs, batch, device=device), device,
                                          args.repeats),
             "teacher": n / best_seconds(lambda: render_all(teacher.mechanisms(), inputs, batch, device=device),
                                         device, args.repeats)}
    sizes = ", ".join(f"{im} {count_parameters(students[im]):,} vs {teacher.num_parameters(im):,}" for im in IMS)
    report(f"compose ({n:,} counterfactuals, batch {batch}; parameters {sizes})", rates, ("students", "teacher"),
           "counterfactuals/s")


if __name__ == "__main__":
    main()
