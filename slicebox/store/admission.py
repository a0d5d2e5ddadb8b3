"""Admission: a job is checked completely before anything of it is written.

Everything a user can get wrong is caught here, with the field named: the spec itself
(``load_spec``), a request the pool can never satisfy (``feasible``, placement's answer,
passed in so the store needs no placement), a dataset or workdir that is not there, a
program that cannot be run. A job must not fail hours later for a typo caught now.

Admission is closed: what it accepts, the local backend can launch. So it checks what
``Popen`` and ``execve`` will meet (the spec's own checks cover NULs, surrogates and
sizes): the working directory is a searchable folder; the program resolves, through the
same ``PATH`` the launcher's ``execvp`` searches, to an executable regular file that the
kernel can run (a binary, or a ``#!`` script whose interpreter exists); no environment
name changes how programs load unless the pool allows it; the dataset is a regular file
or folder outside the kernel's trees, and its size is measured, never taken from the spec.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from slicebox.pool.composition import NoFit
from slicebox.spec import Demand, JobSpec, SpecError, load_spec
from slicebox.spec.job import MAX_SIZE_GIB
from slicebox.store.store import Store
from slicebox.untrusted import NOT_FOUND, PathProblem, file_kind, in_system_tree, resolve, shown

Feasible = Callable[[Demand], NoFit | str | None]  # None: could fit the empty pool

# Environment names that change which code a program loads: the dynamic linker's (LD_*),
# Python's (PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, ...), the program search path, glibc's
# charset modules, and the startup files shells read. A pool's env_allow may permit some.
LOADER_PREFIXES = ("LD_", "PYTHON")
LOADER_NAMES = frozenset({"PATH", "GCONV_PATH", "BASH_ENV", "ENV"})
# PYTHON* variables that only tune a run and load nothing: refusing them would only annoy.
HARMLESS_PYTHON = frozenset({"PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
                             "PYTHONFAULTHANDLER", "PYTHONUTF8"})
MAX_DATASET_ENTRIES = 2_000_000  # files and folders measured; past that, pack the dataset
MAX_DATASET_DEPTH = 64
GIB = 1 << 30
_HEADER_BYTES = 256  # the kernel reads this much of a file to choose how to run it


@dataclass(frozen=True)
class Admitted:
    """A spec as it will be queued: paths absolute, what admission found out."""

    spec: JobSpec
    workdir: str
    program: str  # the executable the launcher will exec (resolved now)
    dataset_size_gib: float | None  # measured, for a dataset with a path


def submit_file(store: Store, path: str | Path, feasible: Feasible,
                cwd: str | Path | None = None, *, env_allow: Collection[str] = ()) -> str:
    """Load, check and queue a job file; the job id. ``SpecError`` names what is wrong.
    ``env_allow``: the pool's ``Pool.env_allow``."""
    spec = load_spec(path)
    return submit_spec(store, spec, feasible, cwd=cwd, source=shown(os.fspath(path), 200),
                       env_allow=env_allow)


def submit_spec(store: Store, spec: JobSpec, feasible: Feasible,
                cwd: str | Path | None = None, source: str = "job spec", *,
                env_allow: Collection[str] = ()) -> str:
    admitted = check_spec(spec, feasible, cwd=cwd, source=source, env_allow=env_allow)
    if admitted.spec.kind == "service":  # a record; the controller queues its replicas
        return store.create_service(admitted.spec, admitted.workdir).id
    return store.submit(admitted.spec, workdir=admitted.workdir,
                        dataset_size_gib=admitted.dataset_size_gib)


def check_file(path: str | Path, feasible: Feasible, cwd: str | Path | None = None, *,
               env_allow: Collection[str] = ()) -> Admitted:
    """Everything ``submit_file`` checks, writing nothing: the job as it would be queued."""
    return check_spec(load_spec(path), feasible, cwd=cwd, source=shown(os.fspath(path), 200),
                      env_allow=env_allow)


def check_spec(spec: JobSpec, feasible: Feasible, cwd: str | Path | None = None,
               source: str = "job spec", *, env_allow: Collection[str] = ()) -> Admitted:
    """``admit`` plus placement's "could this ever fit"; ``SpecError`` names the field."""
    admitted = admit(spec, cwd=cwd, source=source, env_allow=env_allow)
    refusal = feasible(Demand.from_spec(admitted.spec))
    if refusal:
        reason = str(refusal)
        if not reason.startswith("resources"):
            reason = f"{_resource_field(admitted.spec, reason)}: {reason}"
        raise SpecError(f"{source}: {reason}")
    # A service's replicas may move to any of its shapes: each must fit the pool too.
    spec = admitted.spec
    for index in range(len(spec.service.shapes) if spec.service is not None else 0):
        shaped = spec.model_copy(update={"resources": spec.shaped_resources(index)})
        refusal = feasible(Demand.from_spec(shaped))
        if refusal:
            raise SpecError(f"{source}: service.shapes.{index}: {refusal}")
    return admitted


def admit(spec: JobSpec, *, cwd: str | Path | None = None, source: str = "job spec",
          env_allow: Collection[str] = (), search_path: str | None = None) -> Admitted:
    """Check that ``spec`` can be launched from ``cwd``; the spec with absolute paths.
    ``search_path``: the ``PATH`` a job gets when its env sets none (default: the local
    backend's, this interpreter's folder first)."""

    def refuse(field: str, reason: str) -> SpecError:
        return SpecError(f"{source}: {field}: {reason}")

    if spec.replica_of is not None:
        raise refuse("replica_of", "is set by Slicebox on a service's replicas; submit the "
                     "service (kind: service) instead")
    refused = [name for name in spec.env if loads_code(name) and name not in env_allow]
    if refused:
        raise refuse(f"env.{refused[0]}", "changes how programs load, so a job may not set "
                     "it (a pool file's env_allow can permit it)")
    try:
        base = os.getcwd() if cwd is None else os.fspath(cwd)
    except OSError as exc:  # the submitting directory was deleted under us
        raise refuse("workdir (the submitting directory)", str(exc.strerror)) from None
    workdir = _folder(os.path.join(base, spec.workdir or ""), "workdir" if spec.workdir
                      else "workdir (the submitting directory)", refuse)
    if search_path is None:
        search_path = default_search_path()
    path_var = spec.env.get("PATH", search_path)
    try:
        program = find_program(spec.command[0], workdir, path_var)
    except PathProblem as exc:
        raise refuse("command", str(exc)) from None
    size = None
    update: dict[str, object] = {}
    if spec.dataset is not None and spec.dataset.path is not None:
        data, size = _dataset(os.path.join(workdir, spec.dataset.path), refuse)
        update["dataset"] = spec.dataset.model_copy(update={"path": data, "size_gib": size})
    if spec.workdir:
        update["workdir"] = workdir
    if update:
        spec = spec.model_copy(update=update)
    return Admitted(spec, workdir, program, size)


def loads_code(name: str) -> bool:
    """True for an environment name that changes how programs load (see LOADER_*)."""
    if name in HARMLESS_PYTHON:
        return False
    return name in LOADER_NAMES or name.startswith(LOADER_PREFIXES)


def default_search_path() -> str:
    """The ``PATH`` the local backend gives a job: this interpreter's folder first."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _folder(path: str, field: str, refuse: Callable[[str, str], SpecError]) -> str:
    try:
        real, info = resolve(path)
    except PathProblem as exc:
        raise refuse(field, f"{shown(path)} is not a directory ({exc})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise refuse(field, f"{shown(real)} is not a directory (it is {file_kind(info)})")
    if not os.access(real, os.X_OK):
        raise refuse(field, f"{shown(real)} is not a directory the job may enter")
    return real


# ---- the program ------------------------------------------------------------------------


def find_program(program: str, workdir: str, path_var: str) -> str:
    """The real path of what ``execvp(program)`` will run from ``workdir`` with ``PATH``
    ``path_var``; ``PathProblem`` says why it cannot be run. Mirrors execvp: a name with a
    slash is taken as it is, else each ``PATH`` entry is tried in order (empty: the
    working directory) and the first executable file wins."""
    if "/" in program:
        candidates = [os.path.join(workdir, program)]
    else:
        candidates = [os.path.join(workdir, entry or ".", program)
                      for entry in path_var.split(os.pathsep)]
    first_problem = None
    for candidate in candidates:
        problem = _not_runnable(candidate)
        if problem is None:
            return resolve(candidate)[0]
        if first_problem is None and problem != "not found":
            first_problem = problem
    if first_problem is not None:
        raise PathProblem(f"program {shown(program, 200)!r}: {first_problem}")
    where = "" if "/" in program else " on the job's PATH"
    raise PathProblem(f"program {shown(program, 200)!r} not found{where}")


def _not_runnable(path: str) -> str | None:
    """Why the kernel would refuse to exec ``path``, or None."""
    try:
        real, info = resolve(path)
    except PathProblem as exc:
        text = str(exc)
        return "not found" if text == NOT_FOUND else text
    if not stat.S_ISREG(info.st_mode):
        return f"{shown(real)} is {file_kind(info)}, not a program"
    if not os.access(real, os.X_OK) or not info.st_mode & 0o111:
        return f"{shown(real)} is not executable (chmod +x it, or run it through its " \
               "interpreter, e.g. [python, script.py])"
    try:
        if os.statvfs(real).f_flag & os.ST_NOEXEC:
            return f"{shown(real)} is on a file system mounted noexec"
    except OSError:
        pass
    return _format_problem(real)


_SHEBANG = re.compile(rb"#!\s*(\S+)")


def _format_problem(real: str) -> str | None:
    """A file the kernel cannot execute: neither a binary nor a ``#!`` script whose
    interpreter is there (execve's ENOEXEC and ENOENT)."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None  # execute-only binaries exist; the kernel, not we, may read those
    try:
        header = os.read(fd, _HEADER_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    if header.startswith(b"\x7fELF"):
        return None
    match = _SHEBANG.match(header)
    if match is None:
        return (f"{shown(real)} is neither a binary nor a script starting with #! (run it "
                "through its interpreter, e.g. [bash, script.sh])")
    interpreter = os.fsdecode(match.group(1))
    try:
        interp_real, info = resolve(interpreter)
    except PathProblem as exc:
        return f"{shown(real)} names the interpreter {shown(interpreter)!r}: {exc}"
    if not stat.S_ISREG(info.st_mode) or not os.access(interp_real, os.X_OK):
        return f"{shown(real)} names the interpreter {shown(interpreter)!r}, " \
               "which is not an executable file"
    return None


# ---- the dataset ------------------------------------------------------------------------


def _dataset(path: str, refuse: Callable[[str, str], SpecError]) -> tuple[str, float]:
    """The real path of a dataset and its measured size in GiB."""
    try:
        real, info = resolve(path)
    except PathProblem as exc:
        raise refuse("dataset.path", f"{shown(path)}: {exc}") from None
    if real == "/" or in_system_tree(real):
        raise refuse("dataset.path", f"{shown(real)} is not data (/, /dev, /proc and /sys "
                     "are refused)")
    if not os.access(real, os.R_OK | (os.X_OK if stat.S_ISDIR(info.st_mode) else 0)):
        raise refuse("dataset.path", f"{shown(real)} is not readable")
    try:
        size = measure(real, info)
    except PathProblem as exc:
        raise refuse("dataset.path", str(exc)) from None
    gib = size / GIB
    if gib > MAX_SIZE_GIB:
        raise refuse("dataset.path", f"{shown(real)} is {gib:.0f} GiB; at most "
                     f"{MAX_SIZE_GIB:.0f}")
    return real, gib


def measure(real: str, info: os.stat_result) -> int:
    """Bytes a stager copies from ``real`` (symlinks followed, as ``copytree`` does), or
    ``PathProblem`` for anything a copy would choke on: a FIFO, a device, a folder that
    contains itself, a file in the kernel's trees, too many entries."""
    walker = _Walk()
    walker.visit(real, info, ())
    return walker.bytes


class _Walk:
    def __init__(self) -> None:
        self.bytes = 0
        self.entries = 0

    def visit(self, real: str, info: os.stat_result, ancestors: tuple[tuple[int, int], ...]
              ) -> None:
        self.entries += 1
        if self.entries > MAX_DATASET_ENTRIES:
            raise PathProblem(f"has more than {MAX_DATASET_ENTRIES} files and folders; pack "
                              "it into fewer, larger files")
        if stat.S_ISREG(info.st_mode):
            self.bytes += info.st_size
            return
        if not stat.S_ISDIR(info.st_mode):
            raise PathProblem(f"{shown(real)} is {file_kind(info)}; a dataset holds only "
                              "regular files and folders")
        here = (info.st_dev, info.st_ino)
        if here in ancestors:
            raise PathProblem(f"{shown(real)} contains itself (through a symlink)")
        if len(ancestors) >= MAX_DATASET_DEPTH:
            raise PathProblem(f"{shown(real)} is more than {MAX_DATASET_DEPTH} folders deep")
        try:
            with os.scandir(real) as entries:
                # One lstat per entry, from the directory listing; symlinks resolved
                # by the kernel, as the copy will follow them.
                children = [(entry.path, entry.is_symlink(),
                             entry.stat(follow_symlinks=False)) for entry in entries]
        except OSError as exc:
            raise PathProblem(f"{shown(real)}: {exc.strerror or exc}") from None
        for path, is_link, child_info in children:
            child_real = path
            if is_link:
                try:
                    child_real, child_info = resolve(path)
                except PathProblem as exc:
                    raise PathProblem(f"{shown(path)}: {exc}") from None
                if child_real == "/" or in_system_tree(child_real):
                    raise PathProblem(f"{shown(path)} leads to {shown(child_real)}; "
                                      "/, /dev, /proc and /sys are not data")
            self.visit(child_real, child_info, (*ancestors, here))


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
