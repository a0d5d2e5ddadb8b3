"""The local backend: jobs as processes on this machine, each confined to its composition.

Every job runs under the launcher (``launch.py``), which pins the cores, sets the memory
limit and ``exec``s the job's argv (never a shell), then records the exit code in
``<state_dir>/exit/<job-id>``. Output goes to ``<state_dir>/logs/<job-id>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slicebox.backends import launch as launcher_module
from slicebox.backends import limits, procs
from slicebox.backends.base import (
    BackendEvent,
    Exited,
    ExitRecord,
    LaunchError,
    Progress,
    Staged,
    StagingFailed,
    Started,
)
from slicebox.backends.env import job_environment, memory_bytes
from slicebox.backends.logs import read_reports
from slicebox.backends.stager import Stager
from slicebox.pool.composition import Composition, Plan
from slicebox.store.records import JobRecord

LAUNCHER = Path(launcher_module.__file__)
HEADER = "--- slicebox: attempt "


@dataclass
class _Tracked:
    """A job process we watch: our child (``popen``) or adopted after a restart."""

    job_id: str
    attempt: int
    pid: int  # the launcher's; also the job's process group id
    start_time: float
    log_path: Path
    offset: int
    popen: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    deadline: float | None = None
    killed: bool = False


def with_interpreter_on_path(env: dict[str, str], python: str) -> dict[str, str]:
    """``python`` in a job's command means the Python Slicebox runs under (its virtual
    environment, with torch), not whatever comes first on the caller's PATH."""
    bin_dir = str(Path(python).parent)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *parts])
    return env


class LocalBackend:
    name = "local"

    def __init__(self, state_dir: str | Path, *, node: str | None = None,
                 cgroup: str | Path | None = None, python: str = sys.executable,
                 base_env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``node``: the pool node this machine is (None: accept any composition);
        ``cgroup``: "auto" (default), "off", or a cgroup v2 directory for job cgroups."""
        self.state_dir = Path(state_dir)
        self.logs_dir = self.state_dir / "logs"
        self.exit_dir = self.state_dir / "exit"
        self.node = node
        self.limiter = limits.detect(cgroup)
        self._python = python
        self._base_env = with_interpreter_on_path(
            dict(os.environ if base_env is None else base_env), python)
        self._clock = clock
        self._stager = Stager()
        self._tracked: dict[str, _Tracked] = {}

    # ---- acting -----------------------------------------------------------------------

    def apply(self, plan: Plan, jobs: Mapping[str, JobRecord]) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        for job_id in plan.stop:
            self.stop(jobs[job_id])
        for comp in plan.start:
            job = jobs[comp.job_id]
            if comp.staging is not None and not comp.staging.cached:
                self.stage(job, comp)
                continue
            try:
                events.append(self.launch(job, comp))
            except LaunchError as exc:
                events.append(Exited(job.id, job.attempt, None, error=str(exc)))
        return events

    def stage(self, job: JobRecord, comp: Composition) -> None:
        if comp.staging is None:
            raise LaunchError(f"job {job.id}: nothing to stage")
        self._stager.start(job.id, comp.staging)

    def launch(self, job: JobRecord, comp: Composition) -> Started:
        if self.node is not None and comp.node != self.node:
            raise LaunchError(f"job {job.id} is placed on node {comp.node!r}, but this local "
                              f"backend runs node {self.node!r}")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.exit_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{job.id}.log"
        exit_file = self.exit_dir / job.id
        exit_file.unlink(missing_ok=True)  # an earlier attempt's exit must not be read as ours
        cgroup = self.limiter.cgroup_for(job.id, job.attempt)
        argv = [self._python, "-P", str(LAUNCHER), "--job-id", job.id,
                "--attempt", str(job.attempt), "--exit-file", str(exit_file),
                "--cores", ",".join(str(c) for c in comp.cores),
                "--memory-bytes", str(memory_bytes(comp)),
                "--memory-mode", self.limiter.mode()]
        if cgroup is not None:
            argv += ["--cgroup", str(cgroup)]
        argv += ["--", *job.spec.command]
        env = job_environment(self._base_env, job.id, job.attempt, job.spec, comp)
        cwd = job.workdir or job.spec.workdir
        with open(log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"{HEADER}{job.attempt} at {stamp} on {comp.describe()}\n".encode())
            log.flush()
            offset = log.tell()
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=True, close_fds=True)
            except OSError as exc:
                raise LaunchError(f"cannot start job {job.id}: {exc}") from None
        started = procs.start_time(popen.pid) or self._clock()
        self._tracked[job.id] = _Tracked(job.id, job.attempt, popen.pid, started, log_path,
                                         offset, popen)
        return Started(job.id, job.attempt, popen.pid, started, str(log_path), offset)

    def stop(self, job: JobRecord) -> None:
        if self._stager.abort(job.id):
            return  # a StagingFailed(error=None) follows once the copy has stopped
        tracked = self._tracked.get(job.id)
        if tracked is None or tracked.stopping:
            return
        grace = job.spec.checkpoint.grace_seconds
        tracked.stopping, tracked.deadline = True, self._clock() + grace
        if grace <= 0:
            tracked.killed = True
            procs.kill_group(tracked.pid, signal.SIGKILL)
        else:
            procs.kill_group(tracked.pid, signal.Signals[job.spec.checkpoint.signal])

    # ---- watching ---------------------------------------------------------------------

    def poll(self) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        for result in self._stager.poll():
            if result.ok:
                events.append(Staged(result.job_id, result.staging, result.bytes,
                                     result.seconds))
            else:
                events.append(StagingFailed(result.job_id, result.staging, result.error))
        now = self._clock()
        for tracked in list(self._tracked.values()):
            finished = self._exit_of(tracked)  # before reading: its last lines are written
            events.extend(self._progress(tracked, now))
            if finished is not None:
                events.append(finished)
                del self._tracked[tracked.job_id]
            elif (tracked.stopping and not tracked.killed and tracked.deadline is not None
                  and now >= tracked.deadline):
                tracked.killed = True
                procs.kill_group(tracked.pid, signal.SIGKILL)
        return events

    def running(self) -> set[str]:
        return set(self._tracked)

    def staging(self, job_id: str) -> bool:
        return self._stager.busy(job_id)

    def adopt(self, job: JobRecord) -> Started | None:
        pid, started = job.pid, job.pid_start_time
        if pid is None or not procs.is_job_process(pid, started, job.id):
            found = procs.find_launcher(job.id, job.attempt) if pid is None else None
            if found is None:
                # Whatever is left of it (a job whose launcher was killed) must not run on
                # beside the attempt that replaces it.
                procs.kill_job_processes(job.id)
                return None
            pid, started = found.pid, found.create_time()
        if started is None:
            started = procs.start_time(pid) or self._clock()
        log_path = Path(job.log_path) if job.log_path else self.logs_dir / f"{job.id}.log"
        # The recorded offset, or (started but never recorded) from where this attempt's
        # header line ends: reports printed while no controller watched are not lost.
        offset = job.log_offset or _attempt_start(log_path, job.attempt)
        tracked = _Tracked(job.id, job.attempt, pid, started, log_path, offset)
        if job.stop is not None:
            tracked.stopping, tracked.deadline = True, job.stop.deadline
        self._tracked[job.id] = tracked
        return Started(job.id, job.attempt, pid, started, str(log_path), offset)

    def exit_record(self, job: JobRecord) -> ExitRecord | None:
        return self.exit_record_for(job.id, job.attempt)

    def close(self) -> None:
        self._stager.close()
        self._tracked.clear()

    # ---- internals --------------------------------------------------------------------

    def _exit_of(self, tracked: _Tracked) -> Exited | None:
        if tracked.popen is not None:
            code = tracked.popen.poll()
            if code is None:
                return None
        else:
            if procs.alive(tracked.pid, tracked.start_time):
                return None
            code = None  # not our child: only the launcher's exit file can tell
        record = self.exit_record_for(tracked.job_id, tracked.attempt)
        error = None
        if record is not None:
            code, error = record.exit_code, record.error
        return Exited(tracked.job_id, tracked.attempt, code, error, tracked.stopping,
                      tracked.killed)

    def exit_record_for(self, job_id: str, attempt: int) -> ExitRecord | None:
        try:
            data = json.loads((self.exit_dir / job_id).read_text())
        except (OSError, ValueError):
            return None
        if data.get("job_id") != job_id or data.get("attempt") != attempt:
            return None
        return ExitRecord(attempt, data.get("exit_code"), data.get("error"),
                          data.get("finished_at"))

    def _progress(self, tracked: _Tracked, now: float) -> list[Progress]:
        reports, offset = read_reports(tracked.log_path, tracked.offset)
        moved = offset != tracked.offset
        tracked.offset = offset
        events = [Progress(tracked.job_id, r.time or now, r.samples, r.quality, offset)
                  for r in reports]
        if moved and not events:
            # Remember how far we read even without a report, so a restart does not reread.
            events.append(Progress(tracked.job_id, now, None, None, offset))
        return events


def _attempt_start(log_path: Path, attempt: int) -> int:
    """Offset just after this attempt's header line in the log (0 if there is none)."""
    marker = f"{HEADER}{attempt} ".encode()
    with contextlib.suppress(OSError):
        data = log_path.read_bytes()
        at = data.rfind(marker)
        if at >= 0:
            end = data.find(b"\n", at)
            return end + 1 if end >= 0 else len(data)
    return 0
