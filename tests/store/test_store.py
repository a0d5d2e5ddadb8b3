"""The store against a real SQLite file and a real PostgreSQL server (``conftest.py``):
transitions, events, history, datasets, the lease."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from slicebox.pool.composition import Composition, Staging
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import SpecError, parse_spec
from slicebox.store import (
    DatasetRecord,
    IllegalTransition,
    LeaseHeld,
    LeaseLost,
    Store,
    UnknownJob,
)
from tests.store.fakes import Clock


def spec(name: str = "train", **extra: object):
    return parse_spec({"name": name, "command": ["python", "-c", "pass"], **extra})


def comp(job_id: str, cores: tuple[int, ...] = (0, 1), gpu: bool = True) -> Composition:
    slices = (Slice("n0", 0, "H100", SliceType.FRACTION, 0.5, 20.0, "GPU-abc"),) if gpu else ()
    staging = Staging("digits", "/slow/digits", "nvme", "/fast/digits", 0.5, False)
    return Composition.on_node(job_id, "n0", slices, cores, 2.0, (0,), "/fast/digits", staging)


def test_sqlite_file_is_in_wal_mode(tmp_path: Path):
    store = Store.open(tmp_path / "state")
    assert (tmp_path / "state" / "slicebox.db").exists()
    with store._engine.connect() as conn:  # noqa: SLF001 - checking the pragma took
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_reopened_store_is_the_same(store: Store, tmp_path: Path, store_url: str | None):
    job_id = store.submit(spec())
    again = Store.open(tmp_path / "state", url=store_url)
    job = again.job(job_id)
    assert (job.state, job.name, job.spec.command) == (JobState.QUEUED, "train",
                                                        ("python", "-c", "pass"))
    assert [e.kind for e in again.events(job_id)] == ["queued"]


def test_rejected_submit_writes_nothing(store: Store):
    def refuse(_spec: object) -> None:
        raise SpecError("resources.gpus: 9 GPUs requested, the pool has 8")

    with pytest.raises(SpecError, match="resources.gpus"):
        store.submit(spec(), check=refuse)
    assert store.jobs() == [] and store.events() == []


def test_life_cycle_records_every_change_with_its_reason(store: Store, clock: Clock):
    job_id = store.submit(spec())
    store.start(job_id, JobState.STAGING, comp(job_id), "placed", controller_id="c1")
    clock.now += 5
    store.transition(job_id, JobState.RUNNING, "data staged")
    store.set_process(job_id, 4242, 99.5, "/tmp/log")
    clock.now += 10
    job = store.transition(job_id, JobState.SUCCEEDED, "exit code 0", exit_code=0)
    assert job.state is JobState.SUCCEEDED and job.exit_code == 0
    assert job.run_seconds == pytest.approx(10) and job.finished_at == clock.now
    assert job.pid is None and job.attempt == 1
    assert job.composition == comp(job_id)  # JSON round trip keeps every field
    kinds = [(e.from_state, e.kind, e.reason) for e in store.events(job_id)]
    assert kinds == [(None, "queued", "submitted"), ("queued", "staging", "placed"),
                     ("staging", "running", "data staged"),
                     ("running", "process", "process 4242 started"),
                     ("running", "succeeded", "exit code 0")]
    [attempt] = store.composition_history(job_id)
    assert (attempt.started_at, attempt.ended_at) == (1000.0, 1015.0)


@pytest.mark.parametrize(("path", "wanted"), [
    ((), JobState.SUCCEEDED),  # queued jobs have not run
    ((), JobState.PREEMPTED),
    ((JobState.CANCELLED,), JobState.QUEUED),  # terminal is final
])
def test_illegal_transitions_raise_and_change_nothing(store: Store, path, wanted):
    job_id = store.submit(spec())
    for state in path:
        store.transition(job_id, state, "test")
    before = store.events(job_id)
    with pytest.raises(IllegalTransition, match=f"cannot go from .* to {wanted}"):
        store.transition(job_id, wanted, "nope")
    assert store.events(job_id) == before


def test_waiting_jobs_start_only_through_start(store: Store):
    job_id = store.submit(spec())
    with pytest.raises(Exception, match="use start"):
        store.transition(job_id, JobState.RUNNING, "no composition")
    with pytest.raises(IllegalTransition, match="expected it to be running"):
        store.transition(job_id, JobState.CANCELLED, "x", expect=JobState.RUNNING)


def test_unknown_job_and_find_by_prefix_or_name(store: Store):
    job_id = store.submit(spec("alpha"))
    store.submit(spec("beta"))
    assert store.find(job_id[:5]).id == job_id
    assert store.find("alpha").id == job_id
    with pytest.raises(UnknownJob, match="no job 'zzz'"):
        store.find("zzz")
    with pytest.raises(UnknownJob):
        store.job("nope")


def test_cancel_queued_at_once_running_by_flag_finished_refused(store: Store):
    queued = store.submit(spec("a"))
    assert store.request_cancel(queued).state is JobState.CANCELLED
    running = store.submit(spec("b"))
    store.start(running, JobState.RUNNING, comp(running), "placed")
    job = store.request_cancel(running)
    assert job.state is JobState.RUNNING and job.cancel_requested
    with pytest.raises(IllegalTransition, match="already cancelled"):
        store.request_cancel(queued)


def test_stop_request_survives_and_clears_at_the_end(store: Store, clock: Clock):
    job_id = store.submit(spec())
    store.start(job_id, JobState.RUNNING, comp(job_id), "placed")
    store.request_stop(job_id, JobState.PREEMPTED, "a higher-priority job", grace_seconds=7)
    stop = store.job(job_id).stop
    assert stop is not None and stop.to_state is JobState.PREEMPTED
    assert stop.deadline == clock.now + 7
    job = store.transition(job_id, JobState.PREEMPTED, "stopped")
    assert job.stop is None and job.preemptions == 1
    with pytest.raises(IllegalTransition, match="only active jobs"):
        store.request_stop(job_id, JobState.CANCELLED, "x", grace_seconds=1)


def test_progress_gives_throughput_and_keeps_history(store: Store):
    job_id = store.submit(spec())
    store.start(job_id, JobState.RUNNING, comp(job_id), "placed")
    store.record_progress(job_id, 10.0, samples=100, log_offset=50)
    store.record_progress(job_id, 12.0, samples=300, quality=0.5)
    job = store.job(job_id)
    assert (job.samples, job.quality, job.samples_per_s, job.log_offset) == (300, 0.5, 100.0, 50)
    assert [p.samples_per_s for p in store.progress(job_id)] == [None, 100.0]


def test_waiting_reason_is_logged_only_when_it_changes(store: Store):
    job_id = store.submit(spec())
    assert store.set_reason(job_id, "needs 2 GPUs, 0 free")
    assert not store.set_reason(job_id, "needs 2 GPUs, 0 free")
    assert [e.kind for e in store.events(job_id)] == ["queued", "waiting"]


def test_dataset_records(store: Store):
    rec = DatasetRecord("digits", "n0", "nvme", "/fast/digits", 0.5, last_used=5.0)
    store.put_dataset(rec)
    store.touch_dataset("digits", "n0", "nvme", when=9.0)
    assert [d.last_used for d in store.datasets("n0")] == [9.0]
    store.drop_dataset("digits", "n0", "nvme")
    assert store.datasets() == []


def test_utilisation_and_core_conflicts(store: Store, clock: Clock):
    a, b = store.submit(spec("a")), store.submit(spec("b"))
    store.start(a, JobState.RUNNING, comp(a, (0, 1)), "placed")
    clock.now += 10
    store.start(b, JobState.RUNNING, comp(b, (2, 3), gpu=False), "placed")
    clock.now += 10
    store.transition(a, JobState.SUCCEEDED, "done", exit_code=0)
    points = store.utilisation(now=clock.now + 5)
    assert [(p.time, p.gpus, p.cores, p.jobs) for p in points] == [
        (1000.0, 0.5, 2, 1), (1010.0, 0.5, 4, 2), (1020.0, 0.0, 2, 1), (1025.0, 0.0, 0, 0)]
    assert store.core_conflicts() == []
    c = store.submit(spec("c"))
    store.start(c, JobState.RUNNING, comp(c, (3, 4)), "placed")
    assert store.core_conflicts() == [(b, c, (3,))]
    assert store.attained_gpu_seconds(clock.now)[a] == pytest.approx(10.0)


def test_lease_one_controller_at_a_time(store: Store, clock: Clock):
    store.acquire_lease("c1", ttl=10)
    with pytest.raises(LeaseHeld, match="c1 holds this store"):
        store.acquire_lease("c2", ttl=10)
    # A holder known to be dead (kill -9) is taken over at once...
    store.acquire_lease("c2", ttl=10, holder_alive=lambda _id: False)
    with pytest.raises(LeaseLost):
        store.heartbeat("c1")
    # ...and a silent one after its time-to-live.
    clock.now += 11
    store.acquire_lease("c3", ttl=10)
    store.release_lease("c3")
    assert store.lease() is None


def test_concurrent_writers_from_several_processes(tmp_path: Path, store_url: str | None):
    """The CLI submits while the controller writes: the database serialises, nobody is lost.
    The writers open the store while it is new, so they also race to create its schema."""
    import subprocess
    import sys

    state = tmp_path / "state"
    code = ("import sys; from slicebox.spec import parse_spec; from slicebox.store import Store;"
            f"s = Store.open({str(state)!r}, url={store_url!r});"
            "[s.submit(parse_spec({'name': f'w{sys.argv[1]}-{i}', 'command': ['true']}))"
            " for i in range(15)]")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(2)]
    store = Store.open(state, url=store_url)
    mine = [store.submit(spec(f"main-{i}")) for i in range(15)]
    for job_id in mine:
        store.transition(job_id, JobState.CANCELLED, "test")
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    assert len(store.jobs()) == 45 and len(store.events()) == 60


def test_settings(store: Store):
    store.put_value("pool", "/etc/slicebox/pool.yaml")
    store.put_value("pool", "/srv/pool.yaml")
    assert store.value("pool") == "/srv/pool.yaml" and store.value("nothing") is None
    with pytest.raises(Exception, match="reserved"):
        store.put_value("controller", "me")


def test_controllers_starting_together_get_one_lease(tmp_path: Path, store_url: str | None):
    """Controllers starting at once on a store that has no lease row yet: exactly one holds
    the lease and the others are told who does (never a database error)."""
    import threading

    from sqlalchemy import delete

    from slicebox.store.schema import KeyValueRow

    stores = [Store.open(tmp_path / "state", url=store_url) for _ in range(4)]
    try:
        for attempt in range(5):
            with stores[0]._engine.begin() as conn:  # noqa: SLF001 - back to no lease row
                conn.execute(delete(KeyValueRow))
            barrier = threading.Barrier(len(stores))
            outcomes: list[str] = [""] * len(stores)

            def contend(i: int, attempt: int = attempt, barrier=barrier, outcomes=outcomes):
                barrier.wait()
                try:
                    stores[i].acquire_lease(f"c{attempt}-{i}", ttl=60)
                    outcomes[i] = "held"
                except LeaseHeld:
                    outcomes[i] = "refused"
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    outcomes[i] = repr(exc)

            threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(stores))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert sorted(outcomes) == ["held"] + ["refused"] * (len(stores) - 1)
    finally:
        for s in stores:
            s.close()
