"""Admission: a job is checked completely before anything of it is written.

Everything a user can get wrong is caught here, with the field named: the spec itself
(``load_spec``), a request the pool can never satisfy (``feasible``, placement's answer,
passed in so the store needs no placement), a dataset or workdir that is not there, a
program that cannot be found. A job must not fail hours later for a typo caught now.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from slicebox.spec import Demand, JobSpec, SpecError, load_spec
from slicebox.store.store import Store

Feasible = Callable[[Demand], str | None]  # None: could fit the empty pool; else why not


def submit_file(store: Store, path: str | Path, feasible: Feasible,
                cwd: str | Path | None = None) -> str:
    """Load, check and queue a job file; the job id. ``SpecError`` names what is wrong."""
    spec = load_spec(path)
    return submit_spec(store, spec, feasible, cwd=cwd, source=str(path))


def submit_spec(store: Store, spec: JobSpec, feasible: Feasible,
                cwd: str | Path | None = None, source: str = "job spec") -> str:
    base = Path(cwd or os.getcwd()).resolve()
    spec, workdir, size = _resolve(spec, base, source)
    reason = feasible(Demand.from_spec(spec))
    if reason:
        if not reason.startswith("resources"):
            reason = f"{_resource_field(spec, reason)}: {reason}"
        raise SpecError(f"{source}: {reason}")
    return store.submit(spec, workdir=str(workdir), dataset_size_gib=size)


def _resolve(spec: JobSpec, base: Path, source: str) -> tuple[JobSpec, Path, float | None]:
    """Relative paths made absolute (against ``base``, as a shell would) and checked."""
    workdir = (base / spec.workdir).resolve() if spec.workdir else base
    if not workdir.is_dir():
        raise SpecError(f"{source}: workdir: {workdir} is not a directory")
    program = spec.command[0]
    if "/" in program:
        found = (workdir / program).exists()
    else:
        # The local backend puts this interpreter's bin/ first on a job's PATH.
        search = os.pathsep.join([str(Path(sys.executable).parent),
                                  spec.env.get("PATH", os.environ.get("PATH", ""))])
        found = shutil.which(program, path=search) is not None
    if not found:
        raise SpecError(f"{source}: command: program {program!r} not found")
    size = None
    if spec.dataset is not None and spec.dataset.path is not None:
        data = (workdir / spec.dataset.path).resolve()
        if not data.exists():
            raise SpecError(f"{source}: dataset.path: {data} does not exist")
        needed = os.R_OK | (os.X_OK if data.is_dir() else 0)
        if not os.access(data, needed):
            raise SpecError(f"{source}: dataset.path: {data} is not readable")
        size = spec.dataset.size_gib if spec.dataset.size_gib is not None else _size_gib(data)
        spec = spec.model_copy(update={
            "dataset": spec.dataset.model_copy(update={"path": str(data)})})
    if spec.workdir:
        spec = spec.model_copy(update={"workdir": str(workdir)})
    return spec, workdir, size


def _size_gib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / (1 << 30)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total / (1 << 30)


def _resource_field(spec: JobSpec, reason: str) -> str:
    """The spec field a placement refusal is about, when its reason does not say."""
    text = reason.lower()
    for word, name in (("mig", "resources.mig"), ("fraction", "resources.fraction"),
                       ("kind", "resources.gpu_kinds"), ("gpu memory", "resources.gpu_memory_gib"),
                       ("gpu", "resources.gpus"), ("core", "resources.cpus"),
                       ("cpu", "resources.cpus"), ("memory", "resources.memory_gib")):
        if word in text:
            return name
    return "resources.gpus" if spec.resources.max_gpus else "resources"
