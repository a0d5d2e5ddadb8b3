"""The local backend: jobs as processes on this machine, each confined to its composition.

Every job runs under the launcher (``launch.py``), which pins the cores, sets the memory
limit and ``exec``s the job's argv (never a shell), then records the exit code in
``<state_dir>/exit/<job-id>``. Output goes to ``<state_dir>/logs/<job-id>.log``.

How strongly a job is confined is measured once (``isolation.detect``: cgroups, private
namespaces, subreaper) and shown by ``slicebox pool``. Whatever the kernel enforces, each
``poll`` also checks every job's tree (``monitor``): a widened affinity is put back and a
tree over its memory is killed, each with a ``Breached`` event. A launcher killed from
outside takes its job with it, and the job's exit says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slicebox.backends import isolation, monitor, procs
from slicebox.backends import launch as launcher_module
from slicebox.backends.base import (
    BackendEvent,
    Breached,
    Exited,
    ExitRecord,
    LaunchError,
    Progress,
    Started,
    apply_plan,
)
from slicebox.backends.env import job_environment, memory_bytes
from slicebox.backends.logs import read_reports
from slicebox.backends.stager import Stager
from slicebox.pool.composition import Composition, Plan
from slicebox.store.records import JobRecord

LAUNCHER = Path(launcher_module.__file__)
HEADER = "--- slicebox: attempt "
GIB = 1 << 30
# The launcher's own environment: fixed, so nothing a job or the caller sets (PYTHONPATH,
# LD_PRELOAD) reaches it; the job's environment travels on its stdin. The job id and
# attempt are there so a restarted controller can recognise the launcher.
_LAUNCHER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    cores: frozenset[int] = frozenset()  # empty: not pinned
    memory_limit: int = 0  # bytes; 0: none
    groups: tuple[Path, ...] = ()  # its cgroups (memory first when there is one)
    memory_group: Path | None = None
    breach: str | None = None  # why we killed it, when a limit did
    # Its processes as last seen (pid -> start ticks): where nothing else holds the tree
    # (no cgroup, no namespace), what is left of it after its launcher dies is found here.
    known: dict[int, int] = field(default_factory=dict)


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
                 clock: Callable[[], float] = time.time,
                 namespaces: bool | None = None,
                 checkpoint_root: str | Path | None = None,
                 keepalive: str | Path | None = None, fence_seconds: float = 10.0,
                 die_with_parent: bool = False) -> None:
        """``node``: the pool node this machine is (None: accept any composition);
        ``cgroup``: "auto" (default), "off", or a cgroup v2 directory for job cgroups;
        ``namespaces``: private mount + pid namespaces per job where the kernel allows
        (None: unless ``SLICEBOX_NAMESPACES=off``);
        ``checkpoint_root``: where jobs' own checkpoint folders go (``<root>/<job-id>``;
        default ``<state_dir>/checkpoints``): storage every node mounts, so a job resumed
        on another node finds its checkpoint;
        ``keepalive``: a file the caller (a node agent) touches while it is in touch with
        its controller; a job whose keepalive has not changed for ``fence_seconds`` is
        killed by its launcher (fenced), so that it never runs beside its replacement;
        ``die_with_parent``: the launcher ends its job when the process that launched it
        dies (an agent); never for a local controller, whose restart must keep jobs."""
        if keepalive is not None and not fence_seconds > 0:
            raise ValueError(f"fence_seconds must be positive, not {fence_seconds!r}")
        self.state_dir = Path(state_dir)
        self.checkpoint_root = (Path(checkpoint_root) if checkpoint_root is not None
                                else self.state_dir / "checkpoints")
        self.keepalive = Path(keepalive) if keepalive is not None else None
        self.fence_seconds = float(fence_seconds)
        self.die_with_parent = die_with_parent
        self.logs_dir = self.state_dir / "logs"
        self.exit_dir = self.state_dir / "exit"
        self.node = node
        self.isolation = isolation.detect(cgroup, namespaces)
        self._python = python
        self._base_env = with_interpreter_on_path(
            dict(os.environ if base_env is None else base_env), python)
        self._clock = clock
        self._stager = Stager()
        self._tracked: dict[str, _Tracked] = {}
        # Cgroups of finished attempts that a dead launcher could not remove; retried
        # each round (rmdir only ever removes an empty cgroup).
        self._stale: set[Path] = set()

    # ---- acting -----------------------------------------------------------------------

    def apply(self, plan: Plan, jobs: Mapping[str, JobRecord]) -> list[BackendEvent]:
        return apply_plan(self, plan, jobs)

    def stage(self, job: JobRecord, comp: Composition) -> None:
        if comp.staging is None:
            raise LaunchError(f"job {job.id}: nothing to stage")
        self._stager.start(job.id, comp.staging)

    def launch(self, job: JobRecord, comp: Composition, *,
               extra_env: Mapping[str, str] | None = None) -> Started:
        """Start ``job`` on ``comp`` (one node). ``extra_env``: variables the caller adds
        to the job's environment after the composition's (a gang rank's ``MASTER_ADDR``,
        ``RANK``, ``SLICEBOX_WORLD_SIZE``, ``SLICEBOX_RANK``); they may not set any other
        ``SLICEBOX_*`` nor ``CUDA_VISIBLE_DEVICES``, which say what the job was given."""
        if self.node is not None and comp.node != self.node:
            raise LaunchError(f"job {job.id} is placed on node {comp.node!r}, but this local "
                              f"backend runs node {self.node!r}")
        extra = _checked_extra_env(job.id, extra_env or {})
        # Owner only: where no namespace hides them, a job running as another user must
        # not read other jobs' logs and exits.
        for folder in (self.logs_dir, self.exit_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{job.id}.log"
        exit_file = self.exit_dir / job.id
        exit_file.unlink(missing_ok=True)  # an earlier attempt's exit must not be read as ours
        memory_group, cpuset = self.isolation.cgroups_for(job.id, job.attempt)
        argv = [self._python, "-I", str(LAUNCHER), "--job-id", job.id,
                "--attempt", str(job.attempt), "--exit-file", str(exit_file),
                "--cores", ",".join(str(c) for c in comp.cores),
                "--memory-bytes", str(memory_bytes(comp)),
                "--memory-mode", self.isolation.memory_mode(), "--env-stdin"]
        if memory_group is not None:
            argv += ["--cgroup", str(memory_group)]
        if cpuset is not None and comp.cores:
            argv += ["--cpuset", str(cpuset)]
        checkpoints = self.checkpoint_dir(job)
        own_folder = checkpoints == self._default_checkpoint_dir(job)
        if own_folder:
            checkpoints.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.isolation.namespaces:
            argv += ["--private", *self._hidden()]
            if comp.data_path:
                argv += ["--data", comp.data_path]
            if own_folder:
                # Its own checkpoint folder stays writable where the state dir (and a
                # checkpoint root elsewhere) is hidden; only that one: a spec's
                # checkpoint.path naming the logs or exit records must not open them.
                argv += ["--keep", str(checkpoints.resolve())]
        argv += self._fence_arguments()
        argv += ["--", *job.spec.command]
        job_env = job_environment(self._base_env, job.id, job.attempt, job.spec, comp,
                                  checkpoint_dir=str(checkpoints))
        job_env.update(extra)
        env = {"PATH": _LAUNCHER_PATH, "LC_ALL": "C.UTF-8", "SLICEBOX_JOB_ID": job.id,
               "SLICEBOX_ATTEMPT": str(job.attempt)}
        cwd = job.workdir or job.spec.workdir
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"{HEADER}{job.attempt} at {stamp} on {comp.describe()}\n".encode())
            log.flush()
            offset = log.tell()
            try:
                popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=True, close_fds=True)
            except (OSError, ValueError) as exc:
                raise LaunchError(f"cannot start job {job.id}: {exc}") from None
        self._send_env(popen, job_env)
        started = procs.start_time(popen.pid) or self._clock()
        self._tracked[job.id] = self._tracked_for(job, comp, popen.pid, started, log_path,
                                                  offset, popen)
        return Started(job.id, job.attempt, popen.pid, started, str(log_path), offset)

    def checkpoint_dir(self, job: JobRecord) -> Path:
        """Where ``job`` keeps its checkpoints: its spec's ``checkpoint.path`` (relative
        to its workdir), else ``<state>/checkpoints/<job-id>``, one folder per job."""
        named = job.spec.checkpoint.path
        if named:
            path = Path(named)
            base = job.workdir or job.spec.workdir
            return path if path.is_absolute() or base is None else Path(base) / path
        return self._default_checkpoint_dir(job)

    def _default_checkpoint_dir(self, job: JobRecord) -> Path:
        return self.checkpoint_root / job.id

    def _hidden(self) -> list[str]:
        """``--hide`` arguments: the state directory, and a checkpoint root outside it
        (other jobs' checkpoints), each hidden from the job but for its ``--keep``."""
        state = self.state_dir.resolve()
        hidden = [state]
        root = self.checkpoint_root.resolve()
        if not root.is_relative_to(state):
            root.mkdir(mode=0o700, parents=True, exist_ok=True)  # hidden only if it exists
            if state.is_relative_to(root):
                hidden.insert(0, root)  # the outer one first: the inner is then covered
            else:
                hidden.append(root)
        return [arg for path in hidden for arg in ("--hide", str(path))]

    def _fence_arguments(self) -> list[str]:
        argv: list[str] = []
        if self.keepalive is not None:
            argv += ["--keepalive", str(self.keepalive.absolute()),
                     "--fence-seconds", repr(self.fence_seconds)]
        if self.die_with_parent:
            argv += ["--parent-pid", str(os.getpid())]
        return argv

    @staticmethod
    def _send_env(popen: subprocess.Popen[bytes], env: Mapping[str, str]) -> None:
        assert popen.stdin is not None
        try:
            popen.stdin.write(json.dumps(dict(env)).encode("utf-8", "surrogatepass"))
        except (OSError, ValueError):
            pass  # the launcher died at once; its exit is seen by poll
        finally:
            with contextlib.suppress(OSError):
                popen.stdin.close()

    def _tracked_for(self, job: JobRecord, comp: Composition | None, pid: int,
                     started: float, log_path: Path, offset: int,
                     popen: subprocess.Popen[bytes] | None = None) -> _Tracked:
        memory_group, cpuset = self.isolation.cgroups_for(job.id, job.attempt)
        groups = tuple(g for g in (memory_group, cpuset) if g is not None)
        cores = frozenset(comp.cores) if comp is not None and not comp.multi_node else frozenset()
        limit = memory_bytes(comp) if comp is not None else 0
        return _Tracked(job.id, job.attempt, pid, started, log_path, offset, popen,
                        cores=cores, memory_limit=limit, groups=groups,
                        memory_group=memory_group)

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
            self._kill_tree(tracked)
        else:
            procs.kill_group(tracked.pid, signal.Signals[job.spec.checkpoint.signal])

    # ---- watching ---------------------------------------------------------------------

    def poll(self) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        events.extend(result.event() for result in self._stager.poll())
        now = self._clock()
        self._stale = {g for g in self._stale if not _try_remove_group(g)}
        # Without per-task children files: one scan of /proc per round, and only where a
        # tree is not held by the kernel.
        children = monitor.children_map() if not monitor.HAVE_CHILDREN_FILES and any(
            not self._kernel_holds(t) for t in self._tracked.values()) else None
        for tracked in list(self._tracked.values()):
            finished = self._exit_of(tracked)  # before reading: its last lines are written
            events.extend(self._progress(tracked, now))
            if finished is not None:
                events.append(finished)
                del self._tracked[tracked.job_id]
                self._stale.update(g for g in tracked.groups if g.exists())
                continue
            if (tracked.stopping and not tracked.killed and tracked.deadline is not None
                    and now >= tracked.deadline):
                tracked.killed = True
            if tracked.killed or tracked.breach is not None:
                # Again each round: a launcher that had not forked yet forks after a kill.
                self._kill_tree(tracked)
            events.extend(self._guard(tracked, children))
        return events

    def _kernel_holds(self, tracked: _Tracked) -> bool:
        """Its processes are exactly its cgroup's: it cannot leave a cgroup it cannot write
        (read-only cgroupfs in its namespace) nor hide from it."""
        return self.isolation.namespaces and tracked.memory_group is not None \
            and self.isolation.version == "v1"

    def _guard(self, tracked: _Tracked,
               children: monitor.Children | None) -> list[BackendEvent]:
        """The monitor: put a widened affinity back; kill a tree over its memory."""
        if tracked.breach is not None:
            return []
        events: list[BackendEvent] = []
        if self._kernel_holds(tracked):
            pids = set(isolation.read_pids(tracked.memory_group or Path()))
        else:
            pids = monitor.tree(tracked.pid, tracked.groups, children)
            tracked.known = {pid: ticks for pid in pids
                             if (ticks := tracked.known.get(pid) or monitor.start_ticks(pid))}
        if tracked.cores:
            wide = monitor.off_cores(pids, set(tracked.cores))
            if wide:
                seen = set().union(*wide.values())
                events.append(Breached(tracked.job_id, tracked.attempt, "cores",
                                       f"cores {_cores(seen)} ({len(wide)} threads)",
                                       f"cores {_cores(tracked.cores)}", "reverted"))
        if tracked.memory_limit > 0:
            used = monitor.memory(pids, tracked.memory_group)
            if used.bytes > tracked.memory_limit:
                observed = f"{used.bytes / GIB:.2f} GiB"
                allowed = f"{tracked.memory_limit / GIB:.2f} GiB"
                tracked.breach = (f"stopped: over its memory limit of {allowed} ({observed} "
                                  "held, counting RAM, shared memory and /dev/shm files)")
                self._kill_tree(tracked)
                events.append(Breached(tracked.job_id, tracked.attempt, "memory", observed,
                                       allowed, "killed"))
        return events

    def _kill_tree(self, tracked: _Tracked) -> int:
        """SIGKILL every process of the job but its launcher, which then records the exit
        and removes the cgroups. Where the launcher is gone, the whole tree goes too."""
        victims = monitor.tree(tracked.pid, tracked.groups)
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not procs.alive(tracked.pid, tracked.start_time):
            # Orphans went to an ancestor: find them by what we saw and by the job's id.
            for pid, ticks in tracked.known.items():
                if monitor.start_ticks(pid) == ticks:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    victims.add(pid)
            victims.update(p.pid for p in procs.job_processes(tracked.job_id))
            procs.kill_job_processes(tracked.job_id)
        return len(victims)

    def running(self) -> set[str]:
        return set(self._tracked)

    def staging(self, job_id: str) -> bool:
        return self._stager.busy(job_id)

    def adopt(self, job: JobRecord) -> Started | None:
        known = self._tracked.get(job.id)
        if known is not None and known.attempt == job.attempt:
            return self._readopt(known, job)
        pid, started = job.pid, job.pid_start_time
        if pid is None or not procs.is_job_process(pid, started, job.id):
            found = procs.find_launcher(job.id, job.attempt) if pid is None else None
            if found is None:
                # Whatever is left of it (a job whose launcher was killed) must not run on
                # beside the attempt that replaces it; nor may its cgroups stay behind.
                procs.kill_job_processes(job.id)
                for group in self.isolation.cgroups_for(job.id, job.attempt):
                    if group is not None and group.exists():
                        self._stale.add(group)
                        _try_remove_group(group)
                return None
            pid, started = found.pid, found.create_time()
        if started is None:
            started = procs.start_time(pid) or self._clock()
        log_path = Path(job.log_path) if job.log_path else self.logs_dir / f"{job.id}.log"
        # The recorded offset, or (started but never recorded) from where this attempt's
        # header line ends: reports printed while no controller watched are not lost.
        offset = job.log_offset or _attempt_start(log_path, job.attempt)
        tracked = self._tracked_for(job, job.composition, pid, started, log_path, offset)
        if job.stop is not None:
            tracked.stopping, tracked.deadline = True, job.stop.deadline
        self._tracked[job.id] = tracked
        return Started(job.id, job.attempt, pid, started, str(log_path), offset)

    def _readopt(self, tracked: _Tracked, job: JobRecord) -> Started | None:
        """A new controller asks a backend that never stopped watching the job (a node
        agent outlives its controller). Still running: the same watch goes on (its child,
        its stop, its limits), reading again from the offset the store has, so that what
        the dead controller never recorded is not lost. Ended: no longer watched, and
        None; ``exit_record`` says how it ended, as for any job that ended unwatched."""
        finished = self._exit_of(tracked)
        if finished is not None:
            del self._tracked[job.id]
            self._stale.update(g for g in tracked.groups if g.exists())
            return None
        tracked.offset = job.log_offset or _attempt_start(tracked.log_path, job.attempt)
        if job.stop is not None and not tracked.stopping:
            tracked.stopping, tracked.deadline = True, job.stop.deadline
        return Started(job.id, job.attempt, tracked.pid, tracked.start_time,
                       str(tracked.log_path), tracked.offset)

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
        data = self._exit_data(tracked.job_id, tracked.attempt)
        error, fenced = None, False
        if data is not None:
            record = _record_of(data, tracked.attempt)
            # fenced: its launcher ended it because this node lost touch with its
            # controller, which starts it elsewhere: not the job's failure.
            code, error, fenced = record.exit_code, record.error, record.node_lost
        else:
            # The launcher died without writing its record (killed from outside): end
            # whatever of the job is left and say so, rather than guess at the cause.
            left = self._end_orphaned(tracked)
            if code is not None:
                how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                       else f"exited with {code}")
                error = (f"its launcher (pid {tracked.pid}) {how} without recording the "
                         f"job's exit; {left} leftover job processes were ended")
        if tracked.breach is not None:
            error = tracked.breach
        return Exited(tracked.job_id, tracked.attempt, code, error, tracked.stopping,
                      tracked.killed, node_lost=fenced)

    def _end_orphaned(self, tracked: _Tracked) -> int:
        left = self._kill_tree(tracked)
        for group in tracked.groups:
            if not _try_remove_group(group):
                self._stale.add(group)  # still emptying: next round
        return left

    def exit_record_for(self, job_id: str, attempt: int) -> ExitRecord | None:
        data = self._exit_data(job_id, attempt)
        return _record_of(data, attempt) if data is not None else None

    def fenced(self, job_id: str, attempt: int) -> str | None:
        """Why this attempt's launcher fenced it (its keepalive went stale, or its agent
        died), from its exit record; None when it was not fenced or has not ended."""
        data = self._exit_data(job_id, attempt)
        if data is None or data.get("fenced") is not True:
            return None
        return str(data.get("error") or "fenced")

    def _exit_data(self, job_id: str, attempt: int) -> dict[str, object] | None:
        try:
            data = json.loads((self.exit_dir / job_id).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("job_id") != job_id \
                or data.get("attempt") != attempt:
            return None
        return data

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


def _record_of(data: Mapping[str, object], attempt: int) -> ExitRecord:
    """An exit file's content (its job id and attempt already checked) as a record."""
    code, error, finished = data.get("exit_code"), data.get("error"), data.get("finished_at")
    return ExitRecord(attempt, code if isinstance(code, int) else None,
                      error if isinstance(error, str) else None,
                      float(finished) if isinstance(finished, (int, float)) else None,
                      node_lost=data.get("fenced") is True)


_RESERVED_NAMES = ("CUDA_VISIBLE_DEVICES",)
# The two SLICEBOX_ names only a gang launcher knows (``env.rank_environment``): the gang's
# process count and this rank. Every other SLICEBOX_ name is the backend's to say.
GANG_VARIABLES = frozenset({"SLICEBOX_WORLD_SIZE", "SLICEBOX_RANK"})


def _checked_extra_env(job_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's variables, refused where they would change what the composition says
    (``SLICEBOX_*``, ``CUDA_VISIBLE_DEVICES``) or are not an environment entry at all."""
    checked = {}
    for name, value in extra.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise LaunchError(f"job {job_id}: extra environment entry {name!r} must map a "
                              "name to a string")
        if (name.startswith("SLICEBOX_") and name not in GANG_VARIABLES) \
                or name in _RESERVED_NAMES:
            raise LaunchError(f"job {job_id}: extra environment variable {name} may not be "
                              "set: it is the backend's (what the job was given)")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise LaunchError(f"job {job_id}: extra environment variable {name!r} is not a "
                              "valid name=value entry (empty name, '=' or NUL)")
        checked[name] = value
    return checked


def _cores(cores: frozenset[int] | set[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


def _try_remove_group(group: Path) -> bool:
    """Kill what is left in a finished attempt's cgroup and remove it; done (or gone)?"""
    for pid in isolation.read_pids(group):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    try:
        group.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        # Busy: still emptying, retried next round. Anything else (a plain folder standing
        # in for cgroupfs, no permission) will not change: give up on it.
        return exc.errno != errno.EBUSY
    return True


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
