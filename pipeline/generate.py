"""Stage generate@<im>: teacher samples for one mechanism, a training set and a held-out set.

The two sets come from different seed streams: the held-out inputs are never seen in training, so the
fidelity measured on them is generalisation, not memory.
"""

from pipeline.common import DATA, setup_torch, stage_args, staging, teacher_from
from skdcgn.generate import generate_samples
from skdcgn.progress import progress
from skdcgn.seeds import generator


def main() -> None:
    params, im = stage_args(with_im=True)
    setup_torch()
    teacher = teacher_from(params)
    settings = params.generate
    with staging(DATA / "teacher" / im) as out:
        for split, per_class in (("train", settings.per_class), ("heldout", settings.heldout_per_class)):
            total = per_class * teacher.num_classes
            with progress(f"generate {im} {split}", total, every=settings.batch_size) as advance:
                generate_samples(teacher, im, out / split, per_class, generator(params.seed, "generate", im, split),
                                 settings.shard_size, settings.batch_size, advance)


if __name__ == "__main__":
    main()
