"""Stage evaluate: a classifier trained on the students' counterfactuals, tested out of distribution and
compared with the teacher's counterfactuals (stage reference) at the same size, inputs and seeds; and a
classifier that tries to tell the students' counterfactuals from real images with random colours."""

from pipeline.classify import evaluation_sets, real_or_counterfactual, scores_on_test, write_confusion
from pipeline.common import DATA, read_json, setup_torch, stage_args, staging, teacher_from, write_json
from skdcgn.evaluation import Labelled
from skdcgn.shards import load_dataset, read_meta


def main() -> None:
    params, _ = stage_args(with_im=False)
    setup_torch()
    reference = read_json(DATA / "reference" / "metrics.json")
    _, test = evaluation_sets(params, teacher_from(params), with_factual=False)
    counterfactuals = load_dataset(DATA / "counterfactuals" / "shards")
    train = Labelled(counterfactuals["image"], counterfactuals["label"])
    scores, confusion = scores_on_test("student counterfactuals", train, test, params)
    # Real = the OOD test images: their colours are as independent of the digit as a counterfactual's, so only
    # how the images look can tell the two apart. Factual images would give counterfactuals away by colour alone
    # (test accuracy 0.974 on the default).
    realism = real_or_counterfactual(test, train, params)
    with staging(DATA / "evaluate") as out:
        write_json(out / "metrics.json", {
            "student": scores,
            "student_over_teacher": scores["accuracy"] / reference["teacher"]["accuracy"],
            "train_size": len(train.labels),
            "per_shape": read_meta(DATA / "counterfactuals" / "shards")["info"]["per_shape"],
            "real_vs_counterfactual": realism,
        })
        write_confusion(out / "confusion.csv", confusion)


if __name__ == "__main__":
    main()
