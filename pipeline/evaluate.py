"""Stage evaluate: a classifier trained on the students' counterfactuals, tested out of distribution and
compared with the teacher's counterfactuals (stage reference) at the same size and seeds."""

from pipeline.classify import accuracy_on_test, write_confusion
from pipeline.common import DATA, read_json, setup_torch, stage_args, staging, teacher_from, write_json
from skdcgn.evaluation import ood_test_set
from skdcgn.shards import load_dataset


def main() -> None:
    params, _ = stage_args(with_im=False)
    setup_torch()
    reference = read_json(DATA / "reference" / "metrics.json")
    counterfactuals = load_dataset(DATA / "counterfactuals" / "shards")
    test = ood_test_set(teacher_from(params), params.evaluate.test_size, params.seed)
    accuracy, confusion = accuracy_on_test(
        "student counterfactuals", (counterfactuals["image"], counterfactuals["label"]), test, params)
    with staging(DATA / "evaluate") as out:
        write_json(out / "metrics.json", {
            "accuracy": {"student": accuracy},
            "student_over_teacher": accuracy / reference["accuracy"]["teacher"],
            "train_size": len(counterfactuals["label"]),
        })
        write_confusion(out / "confusion.csv", confusion)


if __name__ == "__main__":
    main()
