"""Submitting: admission with the pool's placer answering "could this ever fit"."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from slicebox.spec import JobSpec, SpecError, load_spec, parse_spec
from slicebox.store import Store, admission
from slicebox.untrusted import shown

from . import dependencies

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
    spec = load_spec(path)
    return submit_spec(store, pool, placer, spec, cwd=cwd, source=shown(os.fspath(path), 200),
                       services=True)


def submit_files(store: Store, pool: Pool, placer: Placer, paths: Sequence[str | Path],
                 cwd: str | Path | None = None, array: Sequence[int] = (), *,
                 after: Sequence[str] = (), afterok: Sequence[str] = ()) -> list[str]:
    """Queue several job files all or nothing; their ids, in the order given.

    Every file is checked (as ``submit_file`` does) before anything is written; then one
    store transaction queues them all. The first bad file's ``SpecError`` is raised and
    nothing is queued. ``array``: each file becomes one job per index (``<name>-<index>``,
    with ``array_index`` set), file by file. ``after``/``afterok``: job ids every job
    also waits for (``submit --after``)."""
    admitted = [admission.check_file(path, placer.feasible, cwd=cwd, env_allow=pool.env_allow)
                for path in paths]
    if after or afterok:
        admitted = [dataclasses.replace(a, spec=dependencies.adding(a.spec, after, afterok))
                    for a in admitted]
    for path, checked in zip(paths, admitted, strict=True):
        dependencies.check(store, checked.spec, shown(os.fspath(path), 200))
    if any(a.spec.kind == "service" for a in admitted):
        return _submit_with_services(store, admitted, paths, array)
    jobs = [(a.spec, a.workdir, a.dataset_size_gib) for a in admitted]
    if array:
        jobs = [(array_member(spec, index), workdir, size)
                for spec, workdir, size in jobs for index in array]
    return store.submit_many(jobs)


def _submit_with_services(store: Store, admitted: list[admission.Admitted],
                          paths: Sequence[str | Path], array: Sequence[int]) -> list[str]:
    """Services (``kind: service``) become service records; jobs are queued as usual.
    Everything was checked first; a service whose name a live one has is refused before
    any job is queued (services are written first, each in its own transaction)."""
    if array:
        name = next(p for p, a in zip(paths, admitted, strict=True) if a.spec.kind == "service")
        raise SpecError(f"{shown(os.fspath(name), 200)}: --array: a service scales by "
                        "replicas, not by an array")
    ids: dict[int, str] = {}
    for n, a in enumerate(admitted):
        if a.spec.kind == "service":
            ids[n] = store.create_service(a.spec, a.workdir).id
    jobs = [(n, a) for n, a in enumerate(admitted) if a.spec.kind != "service"]
    job_ids = store.submit_many([(a.spec, a.workdir, a.dataset_size_gib) for _, a in jobs])
    ids.update({n: job_id for (n, _), job_id in zip(jobs, job_ids, strict=True)})
    return [ids[n] for n in range(len(admitted))]


def array_member(spec: JobSpec, index: int) -> JobSpec:
    """Job ``index`` of an array made from ``spec``: its name gets ``-<index>`` (checked
    like any name) and ``array_index`` is set."""
    data = spec.model_dump(mode="json")
    data.update(name=f"{spec.name}-{index}", array_index=index)
    try:
        return parse_spec(data)
    except SpecError as exc:
        raise SpecError(f"--array {index}: job {spec.name!r} as array member "
                        f"{spec.name}-{index}: {exc}") from None


def submit_spec(store: Store, pool: Pool, placer: Placer, spec: JobSpec,
                cwd: str | Path | None = None, source: str = "job spec", *,
                services: bool = False) -> str:
    """``submit_file`` for a spec already in hand (the API, tests). ``services``: a
    ``kind: service`` spec is accepted (its id is then a service's, not a job's); callers
    that answer with the job (the REST API) leave it off and get a ``SpecError``."""
    if spec.kind == "service" and not services:
        raise SpecError(f"{source}: kind: a service is submitted with `slicebox submit` "
                        "(this interface queues jobs only)")
    dependencies.check(store, spec, source)  # the jobs it waits for are in the store
    return admission.submit_spec(store, spec, placer.feasible, cwd=cwd, source=source,
                                 env_allow=pool.env_allow)
