"""Stage generate@<im>: teacher samples for one mechanism, a training set and a held-out set.

The two sets come from different seed streams: the held-out inputs are never seen in training, so the
fidelity measured on them is generalisation, not memory. `SKDCGN_RESUME=1` continues a killed run from its
whole shards when params, teacher and code are unchanged; the result is the same bytes.
"""

from pipeline.common import (DATA, may_resume, resume_key, setup_torch, shard_writers, stage_args, staging,
                             teacher_from)
from skdcgn.generate import generate_samples
from skdcgn.progress import progress
from skdcgn.seeds import generator


def main() -> None:
    params, im = stage_args(with_im=True)
    setup_torch()
    teacher = teacher_from(params)
    settings = params.generate
    resume = may_resume(default=False)
    writers = shard_writers()
    key = resume_key("generate", im, params.seed, params.teacher, settings, teacher.identity())
    with staging(DATA / "teacher" / im, key, resume) as out:
        for split, per_class in (("train", settings.per_class), ("heldout", settings.heldout_per_class)):
            if (out / split).is_dir():
                continue  # finished before the interruption: kept only when resuming a run of the same key
            total = per_class * teacher.num_classes
            with progress(f"generate {im} {split}", total, every=settings.batch_size) as advance:
                generate_samples(teacher, im, out / split, per_class, generator(params.seed, "generate", im, split),
                                 settings.shard_size, settings.batch_size, advance, resume, writers,
                                 settings.codec(im))


if __name__ == "__main__":
    main()
