"""Stage compose: the three students draw counterfactuals on the stage's device, each IM with its own noise and
class."""

from pipeline.common import DATA, setup_torch, shard_writers, stage_args, staging
from skdcgn.counterfactuals.from_students import sample_students


def main() -> None:
    params, _ = stage_args(with_im=False)
    device = setup_torch()
    writers = shard_writers()
    with staging(DATA / "counterfactuals") as out:
        sample_students(DATA / "students", params.compose, params.seed, shards=out / "shards", grid=out / "grid.png",
                        writers=writers, device=device)


if __name__ == "__main__":
    main()
