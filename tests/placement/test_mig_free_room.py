"""Free room on a MIG card: placeable as a new instance (placeholder uuid) for the simulator
and dry runs; not placeable for the live controller (``Placer(mig_free_room=False)``),
where nothing would create the instance at launch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slicebox.placement import Placer, PoolState, dry_run
from slicebox.placement.search import PLANNED_MIG_PREFIX, find_mig
from slicebox.pool.composition import Composition
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision
from tests.placement.helpers import by_job, example, job

A100 = "A100-80GB"


def mig_node(root: Path, instances: list[tuple[str, int]], cores: str = "0-31") -> Pool:
    """One node with one A100-80GB in MIG mode, laid out as ``instances``."""
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump({"name": "one-mig", "nodes": [{
        "name": "box", "memory_gib": 256, "cores": {0: cores},
        "gpus": [{"kind": A100, "count": 1, "numa": 0, "mig": True}],
        "mig_instances": [{"gpu": 0, "profile": p, "start": s} for p, s in instances]}]}))
    return load_pool(path)


def place_live(pool: Pool, jobs: list, free_room: bool):
    state = PoolState(pool)
    snapshot = ClusterSnapshot(0.0, tuple(jobs), state.capacity())
    run = Decision(tuple(Assignment(j.id, j.demand.gpus) for j in jobs))
    return Placer(pool, mig_free_room=free_room).place(state, snapshot, run)


def test_free_room_is_placed_with_a_placeholder_only_when_allowed(tmp_path: Path) -> None:
    pool = mig_node(tmp_path, [])
    state = PoolState(pool)
    comp = find_mig(state, "a", A100, "1g.10gb", 2, 8)
    assert isinstance(comp, Composition)
    (piece,) = comp.slices
    assert piece.uuid.startswith(PLANNED_MIG_PREFIX)  # the simulator's carvable card
    why = find_mig(state, "a", A100, "1g.10gb", 2, 8, free_room=False)
    assert why.field == "mig" and not why.never
    assert "box/gpu0 has room, but the instance must be created first" in str(why)
    assert "a MIG re-layout that only creates" in str(why)


def test_an_existing_unused_instance_is_used_either_way(tmp_path: Path) -> None:
    pool = mig_node(tmp_path, [("3g.40gb", 4)])
    real = pool.node("box").device(0).mig_instances[0].uuid
    for free_room in (True, False):
        comp = find_mig(PoolState(pool), "a", A100, "3g.40gb", 1, 4, free_room=free_room)
        assert comp.slices[0].uuid == real and comp.slices[0].mig_start == 4
    # A 1g job: only free room would serve it (slices 0-3), so live it waits.
    why = find_mig(PoolState(pool), "b", A100, "1g.10gb", 1, 4, free_room=False)
    assert why.field == "mig" and "must be created first" in str(why)


def test_room_on_a_node_without_the_cores_says_cores(tmp_path: Path) -> None:
    pool = mig_node(tmp_path, [], cores="0-3")
    why = find_mig(PoolState(pool), "a", A100, "1g.10gb", 8, 8, free_room=False)
    assert why.field == "cpus"  # the instance would not help: the node lacks the cores


def test_a_placer_without_free_room_starts_nothing_on_placeholders() -> None:
    pool = example("mixed-rack")  # two A100-80GB in MIG mode with no instances yet
    jobs = [job(f"m{i}", 1, mig="1g.10gb") for i in range(3)]
    simulated = place_live(pool, jobs, free_room=True)
    assert len(simulated.start) == 3
    assert all(s.uuid.startswith(PLANNED_MIG_PREFIX) for c in simulated.start for s in c.slices)
    live = place_live(pool, jobs, free_room=False)
    assert not live.start
    assert set(live.waiting) == {j.id for j in jobs}
    assert all(w.field == "mig" and not w.never for w in live.waiting.values())


@pytest.mark.parametrize("count", [1, 7])
def test_dry_runs_keep_placing_on_free_room(count: int) -> None:
    pool = example("mixed-rack")
    plan = dry_run(pool, [job(f"m{i}", 1, mig="1g.10gb") for i in range(count)])
    assert len(by_job(plan)) == count and not plan.waiting
