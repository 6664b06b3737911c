"""Stage compose: the three students draw counterfactuals on the stage's device, each IM with its own noise and
class."""

from pipeline.common import DATA, SHOWN, setup_torch, shard_writers, stage_args, staging
from skdcgn.counterfactuals.from_students import sample_students
from skdcgn.utils.atomic import atomic_directory


def main() -> None:
    params, _ = stage_args(with_im=False)
    device = setup_torch()
    writers = shard_writers()
    # The shards go to the DVC cache, the grid where git tracks it (a fresh clone's `dvc plots show`).
    with staging(DATA / "counterfactuals") as out, atomic_directory(SHOWN / "counterfactuals") as shown:
        sample_students(DATA / "students", params.compose, params.seed, shards=out / "shards",
                        grid=shown / "grid.png", writers=writers, device=device)


if __name__ == "__main__":
    main()
