"""Stage reference: what the students are measured against, which does not depend on them.

Classifiers trained on the teacher's counterfactuals (from the same inputs and texture shifts the students get in
compose) and on factual, colour-biased data, both tested on the out-of-distribution test set, and one that tells
the teacher's counterfactuals from the real images of that set, as evaluate does for the students'. Kept apart from
`evaluate` so an experiment on the students does not retrain these. Teacher and classifiers run on the stage's
device. For a teacher whose images are not digits (ImageNet) only the grid of its counterfactuals is made, and
the metrics say that the classifier protocol was skipped.
"""

from pipeline.common import DATA, staging, write_json
from pipeline.downstream import (alongside, classifier_for, evaluation_sets, real_or_counterfactual, scores_on_test,
                                 stage_setup, write_confusion)
from skdcgn.counterfactuals.composite import COMPOSITE_RANGE, render
from skdcgn.counterfactuals.inputs import counterfactual_inputs, counterfactual_shifts
from skdcgn.evaluation.protocol import composite_images
from skdcgn.shards.format import decode_images
from skdcgn.utils.grids import save_grid


def main() -> None:
    params, device, teacher, skipped = stage_setup()
    factual, test = (None, None) if skipped else evaluation_sets(params, teacher, with_factual=True)
    settings = params.compose
    inputs = counterfactual_inputs(teacher.z_dims, teacher.num_classes, settings.n, params.seed, settings.per_shape,
                                   teacher.truncation)
    shifts = counterfactual_shifts(settings.n, teacher.image_size, params.seed, settings.texture_shift)
    changes = settings.teacher_mask_changes()
    mechanisms = teacher.mechanisms()
    metrics = {"classifier_protocol": skipped} if skipped else {}
    if not skipped:
        classifier = classifier_for(teacher, device)
        counterfactuals = composite_images(mechanisms, inputs, shifts, changes, device)
        # The classifiers are independent, and this stage is on the way to the last one (evaluate waits on it):
        # the factual one trains on another core meanwhile where there is one.
        with alongside(scores_on_test, "factual data", factual, test, params, classifier) as factual_result:
            teacher_scores, teacher_confusion = scores_on_test("teacher counterfactuals", counterfactuals, test,
                                                               params, classifier)
            # What evaluate asks of the students' counterfactuals, asked of the teacher's: how far from 0.5 a
            # student's figure may be and still be as real as its teacher's.
            realism = real_or_counterfactual(test, counterfactuals, params, classifier)
        factual_scores, _ = factual_result()
        metrics |= {"teacher": teacher_scores, "factual": factual_scores, "real_vs_counterfactual": realism,
                    "train_size": {"teacher": settings.n, "factual": len(factual.labels)},
                    "test_size": len(test.labels)}
    metrics["teacher_parameters"] = sum(map(teacher.num_parameters, teacher.z_dims))
    shown = min(settings.n, settings.grid_columns**2)
    with staging(DATA / "reference") as out:
        write_json(out / "metrics.json", metrics)
        # One folder of grids (a plot in dvc.yaml): the test grid exists only where the protocol runs.
        save_grid(out / "grids" / "grid.png", list(render(mechanisms, inputs, 0, shown, shifts, changes,
                                                          device=device).split(settings.grid_columns)), COMPOSITE_RANGE)
        write_confusion(out / "confusion.csv", None if skipped else teacher_confusion)
        if not skipped:
            test_images = decode_images(test.images[:shown], COMPOSITE_RANGE)
            save_grid(out / "grids" / "test_grid.png", list(test_images.split(settings.grid_columns)),
                      COMPOSITE_RANGE)


if __name__ == "__main__":
    main()
