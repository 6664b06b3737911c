"""Stage evaluate: a classifier trained on the students' counterfactuals, tested out of distribution (the
teacher's counterfactuals get the same test, at the same size, inputs and seeds, in stage reference); and a
classifier that tries to tell the students' counterfactuals from real images with random colours. This stage
does not wait for reference: the two run at once, and the report puts their accuracies side by side. Teacher and
classifiers run on the stage's device. For a teacher whose images are not digits (ImageNet) the metrics say
that the classifier protocol was skipped: the students' fidelity (distill) and grids (compose) still stand."""

import torch

from pipeline.common import DATA, staging, write_json
from pipeline.downstream import (alongside, classifier_for, evaluation_sets, real_or_counterfactual, scores_on_test,
                                 stage_setup, write_confusion)
from pipeline.params import Params
from skdcgn.evaluation.protocol import Labelled
from skdcgn.shards.reading import Dataset, open_dataset
from skdcgn.teachers.base import Teacher


def main() -> None:
    params, device, teacher, skipped = stage_setup()
    counterfactuals = open_dataset(DATA / "counterfactuals" / "shards")
    sizes = {"train_size": counterfactuals.num_samples, "per_shape": counterfactuals.info["per_shape"]}
    if skipped:
        metrics, confusion = {"classifier_protocol": skipped, **sizes}, None
    else:
        scores, confusion, realism = classifier_scores(params, teacher, counterfactuals, device)
        metrics = {"student": scores, **sizes, "real_vs_counterfactual": realism}
    with staging(DATA / "evaluate") as out:
        write_json(out / "metrics.json", metrics)
        write_confusion(out / "confusion.csv", confusion)


def classifier_scores(params: Params, teacher: Teacher, counterfactuals: Dataset,
                      device: torch.device) -> tuple[dict, torch.Tensor, dict]:
    """OOD test scores and confusion of a classifier trained on the students' counterfactuals, and how well
    another tells them from real images."""
    _, test = evaluation_sets(params, teacher, with_factual=False)
    loaded = counterfactuals.load()
    train = Labelled(loaded["image"], loaded["label"])
    classifier = classifier_for(teacher, device)
    # Real = the OOD test images: their colours are as independent of the digit as a counterfactual's, so only
    # how the images look can tell the two apart. Factual images would give counterfactuals away by colour alone
    # (test accuracy 0.974 on the default). The two classifiers are independent: the second trains on another
    # core meanwhile.
    with alongside(real_or_counterfactual, test, train, params, classifier) as realism:
        scores, confusion = scores_on_test("student counterfactuals", train, test, params, classifier)
    return scores, confusion, realism()


if __name__ == "__main__":
    main()
