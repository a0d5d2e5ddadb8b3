"""How a finished process leaves its job: requeue on request, but not forever."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from slicebox.backends.base import Exited
from slicebox.controller.outcome import MAX_ATTEMPTS_ASKING_REQUEUE, outcome
from slicebox.sdk import CHECKPOINTED
from slicebox.snapshot import JobState


def _job(attempt: int) -> Any:
    return SimpleNamespace(stop=None, attempt=attempt)


def test_a_job_that_checkpoints_on_its_own_is_requeued() -> None:
    state, reason = outcome(_job(1), Exited("j", 1, CHECKPOINTED))
    assert state is JobState.PREEMPTED and "checkpointed on its own" in reason


def test_a_job_that_always_asks_to_be_requeued_fails_in_the_end() -> None:
    state, reason = outcome(_job(MAX_ATTEMPTS_ASKING_REQUEUE), Exited("j", 1, CHECKPOINTED))
    assert state is JobState.FAILED and "limit" in reason
