"""Stage compose: the three students draw counterfactuals, each IM with its own noise and class."""

from pipeline.common import DATA, setup_torch, shard_writers, stage_args, staging
from skdcgn.compose import sample_students


def main() -> None:
    params, _ = stage_args(with_im=False)
    setup_torch()
    settings = params.compose
    writers = shard_writers()
    with staging(DATA / "counterfactuals") as out:
        sample_students(DATA / "students", settings.n, params.seed, shards=out / "shards", grid=out / "grid.png",
                        shard_size=settings.shard_size, batch_size=settings.batch_size,
                        grid_columns=settings.grid_columns, texture_shift=settings.texture_shift, writers=writers,
                        changes=settings.mask_changes(), per_shape=settings.per_shape)


if __name__ == "__main__":
    main()
