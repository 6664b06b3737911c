"""Stage generate@<im>: teacher samples for one mechanism, a training set and a held-out set.

The two sets come from different seed streams: the held-out inputs are never seen in training, so the
fidelity measured on them is generalisation, not memory. The teacher runs on the stage's device.
`SKDCGN_RESUME=1` continues a killed run from its whole shards when params, teacher and code are unchanged;
the result is the same bytes.
"""

from pipeline.common import (DATA, exit_on_error, may_resume, resume_key, setup_torch, shard_writers, stage_args,
                             staging)
from skdcgn.teachers.registry import make_teacher
from skdcgn.teachers.sampling import sample_teacher
from skdcgn.utils.progress import progress
from skdcgn.utils.seeds import generator


def main() -> None:
    params, im = stage_args(with_im=True)
    device = setup_torch()
    with exit_on_error():
        teacher = make_teacher(params.teacher).to(device)
    settings = params.generate
    resume = may_resume(default=False)
    writers = shard_writers()
    key = resume_key("generate", im, params.seed, params.teacher.kind, params.teacher.section(), settings,
                     teacher.identity())
    with staging(DATA / "teacher" / im, key, resume) as out:
        for split, per_class in (("train", settings.per_class), ("heldout", settings.heldout_per_class)):
            if (out / split).is_dir():
                continue  # finished before the interruption: kept only when resuming a run of the same key
            total = per_class * teacher.num_classes
            with progress(f"generate {im} {split}", total, every=settings.batch_size) as advance:
                sample_teacher(teacher, im, out / split, per_class, generator(params.seed, "generate", im, split),
                               settings, advance=advance, resume=resume, writers=writers,
                               class_means=split == "train")


if __name__ == "__main__":
    main()
