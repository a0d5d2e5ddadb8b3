"""Submitting: admission with the pool's placer answering "could this ever fit"."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slicebox.spec import JobSpec
from slicebox.store import Store, admission

if TYPE_CHECKING:
    from slicebox.placement.placer import Placer
    from slicebox.pool.model import Pool


def submit_file(store: Store, pool: Pool, placer: Placer, path: str | Path,
                cwd: str | Path | None = None) -> str:
    """Validate a job file against the pool and queue it; the job id.

    Raises ``SpecError`` naming the field and the reason (a misspelt field, a bad value,
    a request ``pool`` can never satisfy, a dataset or workdir that is not there, a
    program that cannot be found); nothing is written then. ``placer`` must be the
    pool's (it answers the "could this ever fit" question).
    """
    return admission.submit_file(store, path, placer.feasible, cwd=cwd,
                                 env_allow=pool.env_allow)


def submit_spec(store: Store, pool: Pool, placer: Placer, spec: JobSpec,
                cwd: str | Path | None = None, source: str = "job spec") -> str:
    """``submit_file`` for a spec already in hand (the API, tests)."""
    return admission.submit_spec(store, spec, placer.feasible, cwd=cwd, source=source,
                                 env_allow=pool.env_allow)
