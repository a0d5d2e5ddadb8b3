"""The demo report's timeline, from a real store on a hand-driven clock: the bars it draws
(one row per core or GPU), its wait lane, its resize markers, and report.json's attempts.
Fast: no job runs; the store records what a controller would have written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicebox.demo import report, scene, timeline
from slicebox.pool.composition import Composition
from slicebox.pool.model import Device, Node, Pool
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import CheckpointRecord, Store

CORES = (0, 1, 2, 3)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(tmp_path: Path, clock: Clock) -> Store:
    return Store.open(tmp_path / "state", clock=clock)


def _pool(gpus: int = 0) -> Pool:
    devices = tuple(Device(i, "H100", f"GPU-{i}") for i in range(gpus))
    return Pool((Node("n0", ((0, CORES),), 64.0, devices),), name="test")


def _submit(store: Store, name: str, cpus: object = 1, priority: int = 0) -> str:
    return store.submit(parse_spec({"name": name, "command": ["python", "-c", "pass"],
                                    "resources": {"cpus": cpus}, "priority": priority}))


def _start(store: Store, job_id: str, cores: tuple[int, ...],
           slices: tuple[Slice, ...] = ()) -> None:
    store.start(job_id, JobState.RUNNING, Composition.on_node(job_id, "n0", slices, cores, 1.0),
                "placed")


def _elastic_story(store: Store, clock: Clock, grow: bool = True) -> dict[str, str]:
    """An elastic job on all 4 cores; an urgent one arrives at 10 s; the elastic job is
    asked to checkpoint at 11 s, is requeued at 12 s, restarts on 2 cores at 13 s beside
    the urgent job, which ends at 30 s; the elastic job is asked to stop at 30.5 s, ends
    at 31 s and grows back to 4 at 33 s (or, without ``grow``, stays on 2 cores until it
    ends at 40 s). Progress and
    checkpoint records are what the controller writes for such a run."""
    elastic = _submit(store, "elastic", {"min": 2, "max": 4})
    clock.now += 1  # 1 s: queued for a second
    _start(store, elastic, CORES)
    store.record_progress(elastic, clock.now + 5, samples=100)
    store.record_progress(elastic, clock.now + 9, samples=300)
    clock.now += 9  # 10 s
    urgent = _submit(store, "urgent", 2, priority=10)
    clock.now += 1  # 11 s: asked to checkpoint
    store.request_stop(elastic, JobState.PREEMPTED, "resize 4→2 cores", grace_seconds=10)
    clock.now += 1  # 12 s: checkpointed and requeued
    store.requeue(elastic, "resize 4→2 cores: to make room", checkpoint=CheckpointRecord(
        elastic, 1, clock.now, "checkpointed", step=10, samples=300, reported_samples=300,
        lost_samples=0, save_seconds=0.25))
    clock.now += 1  # 13 s
    _start(store, urgent, (0, 1))
    _start(store, elastic, (2, 3))
    store.record_progress(elastic, clock.now + 2, samples=300)
    store.record_progress(elastic, clock.now + 17, samples=700)
    clock.now += 17  # 30 s
    store.transition(urgent, JobState.SUCCEEDED, "exit code 0", exit_code=0)
    if grow:
        clock.now += 0.5  # 30.5 s: asked to checkpoint
        store.request_stop(elastic, JobState.PREEMPTED, "resize 2→4 cores", grace_seconds=10)
        clock.now += 0.5  # 31 s
        store.requeue(elastic, "resize 2→4 cores: idle cores", checkpoint=CheckpointRecord(
            elastic, 2, clock.now, "checkpointed", step=20, samples=700,
            reported_samples=720, lost_samples=20, save_seconds=0.25, restored_samples=300,
            restore_seconds=0.5))
        clock.now += 2  # 33 s
        _start(store, elastic, CORES)
        store.record_progress(elastic, clock.now + 6, samples=900)
        clock.now += 7  # 40 s
    else:
        clock.now += 10  # 40 s
    store.transition(elastic, JobState.SUCCEEDED, "exit code 0", exit_code=0)
    store.record_checkpoint(elastic, CheckpointRecord(
        elastic, store.job(elastic).attempt, clock.now, "succeeded",
        restored_samples=700 if grow else 300, restore_seconds=0.5))
    return {"elastic": elastic, "urgent": urgent}


def _build(store: Store, pool: Pool, now: float) -> timeline.Timeline:
    return timeline.build(pool, store.jobs(), store.composition_history(), store.events(), now)


def test_one_row_per_core_and_each_attempt_a_bar_on_the_cores_it_held(store, clock):
    ids = _elastic_story(store, clock)
    t = _build(store, _pool(), clock.now)
    assert t.rows == ("core 0", "core 1", "core 2", "core 3")
    assert t.jobs == ("elastic", "urgent")
    held: dict[tuple[str, int], tuple[list[str], float, float]] = {}
    for bar in t.bars:
        rows, _, _ = held.get((bar.job, bar.attempt), ([], 0.0, 0.0))
        held[(bar.job, bar.attempt)] = (sorted([*rows, bar.row]), bar.start_s, bar.end_s)
    all_rows = ["core 0", "core 1", "core 2", "core 3"]
    assert held == {
        ("elastic", 1): (all_rows, 1.0, 12.0),
        ("urgent", 1): (["core 0", "core 1"], 13.0, 30.0),
        ("elastic", 2): (["core 2", "core 3"], 13.0, 31.0),
        ("elastic", 3): (all_rows, 33.0, 40.0),
    }
    # no row is held by two jobs at once
    for row in t.rows:
        spans = sorted((b.start_s, b.end_s) for b in t.bars if b.row == row)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), row
    assert ids["elastic"] != ids["urgent"]


def test_waits_lane_has_queue_and_requeue_waits_and_markers_name_the_resizes(store, clock):
    ids = _elastic_story(store, clock)
    t = _build(store, _pool(), clock.now)
    waits = [(w.job, w.kind, w.start_s, w.end_s) for w in t.wait_bars()]
    assert waits == [("elastic", "queued", 0.0, 1.0),
                     ("elastic", "requeued", 12.0, 13.0),
                     ("elastic", "requeued", 31.0, 33.0),
                     ("urgent", "queued", 10.0, 13.0)]
    # a resize is marked where the job was asked to checkpoint; the checkpointing is drawn
    assert [(m.job, m.kind, m.time_s, m.cores_before, m.cores_after) for m in t.markers] == [
        ("elastic", "shrink", 11.0, 4, 2), ("elastic", "grow", 30.5, 2, 4)]
    assert [(s.job, s.attempt, s.start_s, s.end_s) for s in t.stops] == [
        ("elastic", 1, 11.0, 12.0), ("elastic", 2, 30.5, 31.0)]
    assert t.markers[0].label == "elastic shrinks 4→2 cores"
    assert [w.kind for w in t.waits_of(ids["urgent"])] == ["queued"]


def test_a_job_still_waiting_waits_until_now_and_a_running_attempt_runs_until_now(store, clock):
    running = _submit(store, "running")
    _start(store, running, (0,))
    clock.now += 4
    waiting = _submit(store, "waiting", 4)
    clock.now += 6
    t = _build(store, _pool(), clock.now)
    assert [(b.job, b.start_s, b.end_s) for b in t.bars] == [("running", 0.0, 10.0)]
    assert [(w.job, w.start_s, w.end_s) for w in t.wait_bars()] == [("waiting", 4.0, 10.0)]
    assert t.attempts_of(running)[0].ended_at is None
    assert t.waits_of(waiting)[0].seconds == pytest.approx(6.0)


def test_gpus_get_rows_of_their_own_beside_the_cores(store, clock):
    job = _submit(store, "gpu-job")
    whole = Slice("n0", 1, "H100", SliceType.WHOLE, 1.0, 80.0, "GPU-1")
    _start(store, job, (0, 1), (whole,))
    clock.now += 5
    t = _build(store, _pool(gpus=2), clock.now)
    assert t.rows == ("core 0", "core 1", "core 2", "core 3", "n0 gpu0", "n0 gpu1")
    assert sorted(b.row for b in t.bars) == ["core 0", "core 1", "n0 gpu1"]


def test_waits_too_short_to_see_stay_in_the_data_but_not_in_the_lane(store, clock):
    job = _submit(store, "quick")
    clock.now += 0.1
    _start(store, job, (0,))
    clock.now += 3
    t = _build(store, _pool(), clock.now)
    assert [w.seconds for w in t.waits] == [pytest.approx(0.1)]
    assert t.wait_bars() == ()


def test_report_json_has_every_attempt_as_the_store_recorded_it(store, clock, tmp_path):
    ids = _elastic_story(store, clock)
    pool = _pool()
    t = _build(store, pool, clock.now)
    summaries = [report.summarise(store, j, clock.now) for j in store.jobs()]
    out = report.write_report(tmp_path / "report", summaries, [], store.utilisation(clock.now),
                              pool, t, controller=None, details=report.attempt_details(store))
    data = json.loads((out / "report.json").read_text())
    assert data["origin"] == t.origin
    by_id = {j["id"]: j for j in data["jobs"]}
    for rec in store.composition_history():
        attempt = by_id[rec.job_id]["attempts"][rec.attempt - 1]
        assert attempt["attempt"] == rec.attempt
        assert (attempt["started_at"], attempt["ended_at"]) == (rec.started_at, rec.ended_at)
        assert attempt["start_s"] == pytest.approx(rec.started_at - data["origin"])
        assert attempt["end_s"] == pytest.approx(rec.ended_at - data["origin"])
        assert attempt["cores"] == list(rec.composition.cores)
    assert len(by_id[ids["elastic"]]["attempts"]) == 3
    assert [(w["kind"], w["seconds"]) for w in by_id[ids["elastic"]]["waits"]] == [
        ("queued", 1.0), ("requeued", 1.0), ("requeued", 2.0)]
    assert [m["kind"] for m in data["timeline"]["markers"]] == ["shrink", "grow"]
    # each attempt says what it trained, and how it ended with respect to checkpoints
    elastic = by_id[ids["elastic"]]["attempts"]
    assert [a["samples_trained"] for a in elastic] == [300, 400, 200]
    assert [a["checkpoint"]["outcome"] for a in elastic] == [
        "checkpointed", "checkpointed", "succeeded"]
    assert elastic[1]["checkpoint"]["lost_samples"] == 20
    assert elastic[1]["checkpoint"]["restored_samples"] == 300
    assert data["timeline"]["rows"] == list(t.rows)
    assert (out / report.TIMELINE_PNG).stat().st_size > 10_000


def test_terminal_timeline_shows_each_core_with_a_letter_per_job(store, clock):
    _elastic_story(store, clock)
    t = _build(store, _pool(), clock.now)
    text = report.terminal_timeline(t, width=40).plain.splitlines()
    core3 = next(line for line in text if line.startswith("core 3"))
    cells = core3.split("  ", 1)[1]
    assert len(cells) == 40 and set(cells) == {"A", "·"}  # only elastic held core 3
    core0 = next(line for line in text if line.startswith("core 0"))
    assert "B" in core0  # urgent ran on core 0
    assert any("elastic shrinks 4→2 cores" in line for line in text)


def test_scene_checks_see_the_shrink_the_grow_and_the_resumes(store, clock):
    ids = _elastic_story(store, clock)
    t = _build(store, _pool(), clock.now)
    checks = scene.scene_checks(store, t, ids["elastic"], ids["urgent"])
    assert [c.ok for c in checks] == [True] * 4, checks
    assert "at 11.0 s: 4→2 cores" in checks[0].detail
    assert "400 samples" in checks[1].detail
    assert "at 30.5 s: 2→4 cores" in checks[2].detail
    assert "2 of 2 restarts resumed; samples redone: 20" in checks[3].detail


def test_scene_checks_fail_when_the_elastic_job_never_grows_back(store, clock):
    ids = _elastic_story(store, clock, grow=False)
    t = _build(store, _pool(), clock.now)
    checks = {c.name: c for c in scene.scene_checks(store, t, ids["elastic"], ids["urgent"])}
    assert not checks["elastic grew back when the urgent job ended"].ok
    assert checks["elastic shrank when urgent arrived"].ok


def test_the_scene_plays_on_two_cores_of_any_pool_and_is_skipped_on_one():
    staged = scene.stage(_pool())
    assert staged is not None and staged.total_cores == 2
    assert staged.nodes[0].cores == (0, 1)
    assert scene.stage(Pool((Node("n0", ((0, (0,)),), 8.0),), name="tiny")) is None


def test_attempts_table_lists_each_attempt_of_restarted_jobs_only(store, clock):
    _elastic_story(store, clock)
    t = _build(store, _pool(), clock.now)
    table = report.attempts_table(t, report.attempt_details(store))
    assert table is not None
    cells = [list(column.cells) for column in table.columns]
    rows = list(zip(*cells, strict=True))
    assert [(r[0], r[1], r[2], r[4], r[6], r[7]) for r in rows] == [
        ("elastic", "1", "0-3", "300", "checkpointed", "0"),
        ("elastic", "2", "2-3", "400", "checkpointed", "20"),
        ("elastic", "3", "0-3", "200", "succeeded", "-")]


def test_no_attempts_table_when_every_job_ran_once(store, clock):
    job = _submit(store, "once")
    _start(store, job, (0,))
    clock.now += 2
    assert report.attempts_table(_build(store, _pool(), clock.now), {}) is None


def test_resumed_check_fails_when_a_restart_started_over(store, clock):
    job = _submit(store, "elastic", {"min": 1, "max": 2})
    _start(store, job, (0, 1))
    clock.now += 5
    store.requeue(job, "resize 2→1 cores", checkpoint=CheckpointRecord(
        job, 1, clock.now, "checkpointed", step=10, samples=300, lost_samples=0))
    _start(store, job, (0,))
    clock.now += 5
    store.transition(job, JobState.SUCCEEDED, "exit code 0", exit_code=0)
    store.record_checkpoint(job, CheckpointRecord(job, 2, clock.now, "succeeded",
                                                  restored_samples=None))
    t = _build(store, _pool(), clock.now)
    resumed = scene.scene_checks(store, t, job, None)[-1]
    assert not resumed.ok and "0 of 1 restarts resumed" in resumed.detail
