"""Compose: counterfactuals/s drawn by the three students against the same counterfactuals from the teacher.

The point of distillation: students should be much cheaper than the teacher. Untrained students of the
configured widths are timed (speed does not depend on the weights), on the same inputs, batch and device,
without writing shards. Usage: python -m benchmarks.compose [--profile ... --set ...]
"""

from __future__ import annotations

import functools

from benchmarks.common import arguments, best_seconds, report, setup
from pipeline.common import teacher_from
from skdcgn import IMS
from skdcgn.compose import counterfactual_inputs, render_all
from skdcgn.students import StudentGenerator, count_parameters


def main() -> None:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    params, device = setup(args)
    teacher = teacher_from(params)
    n, batch = params.compose.n, params.compose.batch_size
    students = {im: StudentGenerator(im, teacher.z_dims[im], teacher.num_classes, teacher.image_size,
                                     params.train_for(im).student_widths).to(device).eval() for im in IMS}
    heads = {im: functools.partial(teacher, im) for im in IMS}
    inputs = {im: (z.to(device), y.to(device))
              for im, (z, y) in counterfactual_inputs(teacher.z_dims, teacher.num_classes, n, params.seed).items()}
    rates = {"students": n / best_seconds(lambda: render_all(students, inputs, batch), device, args.repeats),
             "teacher": n / best_seconds(lambda: render_all(heads, inputs, batch), device, args.repeats)}
    sizes = ", ".join(f"{im} {count_parameters(students[im]):,} vs {teacher.num_parameters(im):,}" for im in IMS)
    report(f"compose ({n:,} counterfactuals, batch {batch}; parameters {sizes})", rates, ("students", "teacher"),
           "counterfactuals/s")


if __name__ == "__main__":
    main()
