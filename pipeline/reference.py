"""Stage reference: what the students are measured against, which does not depend on them.

Classifiers trained on the teacher's counterfactuals (from the same inputs the students get in compose) and on
factual, colour-biased data, both tested on the out-of-distribution test set. Kept apart from `evaluate` so an
experiment on the students does not retrain these.
"""

from pipeline.classify import accuracy_on_test, write_confusion
from pipeline.common import DATA, setup_torch, stage_args, staging, teacher_from, write_json
from skdcgn.compose import counterfactual_inputs
from skdcgn.evaluation import composite_images, factual_set, ood_test_set, teacher_mechanisms


def main() -> None:
    params, _ = stage_args(with_im=False)
    setup_torch()
    teacher = teacher_from(params)
    n = params.compose.n
    test = ood_test_set(teacher, params.evaluate.test_size, params.seed)
    inputs = counterfactual_inputs(teacher.z_dims, teacher.num_classes, n, params.seed)
    teacher_accuracy, teacher_confusion = accuracy_on_test(
        "teacher counterfactuals", composite_images(teacher_mechanisms(teacher), inputs), test, params)
    factual_accuracy, _ = accuracy_on_test("factual data", factual_set(teacher, n, params.seed), test, params)
    with staging(DATA / "reference") as out:
        write_json(out / "metrics.json", {"accuracy": {"teacher": teacher_accuracy, "factual": factual_accuracy},
                                          "train_size": n, "test_size": params.evaluate.test_size})
        write_confusion(out / "confusion.csv", teacher_confusion)


if __name__ == "__main__":
    main()
