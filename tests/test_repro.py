"""pipeline.repro's order: a stage starts only after every stage upstream of it, the most waited-on first."""

from pathlib import Path

from pipeline.repro import Schedule, descendants, stage_graph

ROOT = Path(__file__).resolve().parents[1]

# The default pipeline's graph, as `dvc dag` gives it (dvc.yaml's order).
IMS = ("shape", "texture", "background")
GRAPH = {**{f"generate@{im}": set() for im in IMS}, **{f"distill@{im}": {f"generate@{im}"} for im in IMS},
         "compose": {f"distill@{im}" for im in IMS}, "reference": set(), "evaluate": {"compose"}}


def test_the_graph_here_is_the_pipelines(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert stage_graph([]) == GRAPH


def test_descendants_count_every_stage_that_waits_directly_or_not():
    below = descendants(GRAPH)
    assert below["generate@shape"] == 3 and below["distill@texture"] == 2
    assert below["reference"] == 0 and below["evaluate"] == 0


def drain(schedule: Schedule, jobs: int) -> list[list[str]]:
    """Rounds of stages started together, each round's stages finishing before the next starts."""
    rounds = []
    while not schedule.finished():
        batch = schedule.ready()[:jobs]
        assert batch, "nothing ready, yet not finished"
        schedule.started.update(batch)
        schedule.done.update(batch)
        rounds.append(batch)
    return rounds


def test_no_stage_starts_before_its_upstream_and_the_reference_waits_for_the_students_branch():
    rounds = drain(Schedule(GRAPH), jobs=2)
    finished_by = {stage: index for index, batch in enumerate(rounds) for stage in batch}
    for stage, parents in GRAPH.items():
        assert all(finished_by[parent] < finished_by[stage] for parent in parents), stage
    assert rounds[0] == ["generate@shape", "generate@texture"]
    assert finished_by["reference"] > finished_by["generate@background"]


def test_one_job_runs_one_stage_at_a_time_in_an_order_dvc_could_take():
    rounds = drain(Schedule(GRAPH), jobs=1)
    assert all(len(batch) == 1 for batch in rounds) and len(rounds) == len(GRAPH)
    assert rounds[-1] == ["evaluate"]
