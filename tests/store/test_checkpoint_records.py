"""The checkpoint record of an attempt is written with its requeue, in one transaction:
both or neither."""

from __future__ import annotations

import pytest

from slicebox.snapshot import JobState
from slicebox.store import CheckpointRecord, IllegalTransition, Store
from tests.store.fakes import Clock
from tests.store.test_store import comp, spec


def _record(job_id: str, **fields: object) -> CheckpointRecord:
    values: dict[str, object] = {"job_id": job_id, "attempt": 0, "recorded_at": 0.0,
                                 "outcome": "checkpointed", "reason": "preempted",
                                 "path": "/ckpt/ckpt-000000000040.pt", "step": 40,
                                 "samples": 1280, "saved_at": 999.0, "save_seconds": 0.25,
                                 "reported_samples": 1300, "lost_samples": 20}
    values.update(fields)
    return CheckpointRecord(**values)  # type: ignore[arg-type]


def _running(store: Store) -> str:
    job_id = store.submit(spec())
    store.start(job_id, JobState.RUNNING, comp(job_id), "started")
    return job_id


def test_requeue_records_the_checkpoint_with_the_attempt_and_time(store: Store, clock: Clock):
    job_id = _running(store)
    clock.now = 1234.0
    job = store.requeue(job_id, "preempted by the test", checkpoint=_record(job_id))
    assert job.state is JobState.QUEUED and job.preemptions == 1
    (row,) = store.checkpoints(job_id)
    # The attempt and the time are the store's, whatever the caller put there.
    assert (row.attempt, row.recorded_at) == (1, 1234.0)
    assert (row.step, row.samples, row.lost_samples, row.save_seconds) == (40, 1280, 20, 0.25)
    preempted = [e for e in store.events(job_id) if e.kind == "preempted"][-1]
    assert preempted.details["checkpoint_step"] == 40 and preempted.details["lost_samples"] == 20


def test_summaries_add_up_lost_work_over_attempts(store: Store):
    job_id = _running(store)
    store.requeue(job_id, "one", checkpoint=_record(job_id, lost_samples=20))
    store.start(job_id, JobState.RUNNING, comp(job_id), "again")
    store.requeue(job_id, "two", checkpoint=_record(job_id, outcome="killed", step=80,
                                                    samples=2560, lost_samples=300,
                                                    restore_seconds=0.5))
    store.start(job_id, JobState.RUNNING, comp(job_id), "third")
    store.transition(job_id, JobState.SUCCEEDED, "exit code 0")
    store.record_checkpoint(job_id, _record(job_id, outcome="succeeded", lost_samples=None,
                                            restore_seconds=0.75))
    summary = store.checkpoint_summaries()[job_id]
    assert (summary.requeues, summary.checkpointed, summary.lost_samples) == (2, 1, 320)
    assert summary.last_step == 40  # the last row's checkpoint (the third attempt's record)
    assert summary.last_restore_seconds == 0.75
    assert store.checkpoint_summaries(["someone-else"]) == {}


def test_a_refused_requeue_records_no_checkpoint(store: Store):
    job_id = store.submit(spec())  # queued: not an attempt that can be requeued
    with pytest.raises(IllegalTransition):
        store.requeue(job_id, "preempted", checkpoint=_record(job_id))
    assert store.checkpoints(job_id) == []
