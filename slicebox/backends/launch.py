"""The launcher: the parent of every local job, so its composition holds from the first
instruction, nothing it starts outlives it, and its exit code is never lost.

    python -I launch.py --job-id ID --attempt N --exit-file PATH [--cores 0,1]
        [--memory-bytes B --memory-mode rlimit-data|rlimit-as|cgroup2|cgroup1]
        [--cgroup DIR] [--cpuset DIR] [--private --hide PATH ...] [--env-stdin]
        [--keepalive FILE --fence-seconds S] [--parent-pid PID] -- argv...

It runs with a clean environment of its own; the job's environment arrives as JSON on
stdin (``--env-stdin``) and is applied to the job only, so nothing a job declares
(``PYTHONPATH``, ``LD_PRELOAD``) can change the launcher.

It makes itself a child subreaper (every orphan of the job becomes its child), pins
itself to the cores, makes the job's cgroups, and forks. With ``--private`` the child is
the init of a new pid namespace, in a mount namespace of its own where the state
directory is hidden, /sys and cgroupfs are read-only, ``/proc`` shows the job's processes only and
``/dev/shm`` is a private tmpfs; it dies with the launcher (``PR_SET_PDEATHSIG``), and
the kernel kills everything in the namespace when it dies. The job itself is forked from
there, joins its cgroups, loses every capability and ``exec``s the argv: no shell, no
window in which it runs unconfined. At the end the launcher kills whatever of the tree is
left, removes the cgroups and writes the exit code to ``--exit-file`` atomically.

Fencing (a node agent's jobs, never a local controller's): with ``--keepalive`` the
launcher ends the job when that file has not changed for ``--fence-seconds`` (its agent
lost touch with the controller, which will start the job elsewhere: it must not run
twice); with ``--parent-pid`` it ends the job when that parent (the agent) dies. Either
way the exit record says ``"fenced": true`` and why.

Standard library only, run as a file: it starts fast and needs nothing installed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

MECHANISM_ENV = "SLICEBOX_MEMORY_LIMIT_MECHANISM"
# Signals a stop or a terminal might send to the whole process group. The job decides
# what they mean (checkpoint, exit); the launcher must outlive it to report its exit code.
_SURVIVE = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
            "SIGPWR", "SIGXCPU")
GIB = 1 << 30

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 1, 24, 36
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY = 2, 4, 8, 1
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_LIBC = ctypes.CDLL(None, use_errno=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slicebox-launch")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("--cores", default="")
    parser.add_argument("--memory-bytes", type=int, default=0)
    parser.add_argument("--memory-mode", default="rlimit-data",
                        choices=("rlimit-as", "rlimit-data", "cgroup2", "cgroup1"))
    parser.add_argument("--cgroup", default=None, help="the job's memory cgroup directory")
    parser.add_argument("--cpuset", default=None, help="the job's cgroup v1 cpuset directory")
    parser.add_argument("--private", action="store_true",
                        help="run the job in private mount and pid namespaces")
    parser.add_argument("--hide", action="append", default=[],
                        help="a directory the job must not see (with --private)")
    parser.add_argument("--data", default=None,
                        help="the job's dataset; kept visible when it is in /dev/shm")
    parser.add_argument("--keep", action="append", default=[],
                        help="a directory inside a hidden one that the job may still use "
                             "(its checkpoint folder), bound back read-write")
    parser.add_argument("--env-stdin", action="store_true",
                        help="read the job's environment as a JSON object from stdin")
    parser.add_argument("--keepalive", default=None,
                        help="end the job when this file stops changing (its agent is cut off)")
    parser.add_argument("--fence-seconds", type=float, default=10.0,
                        help="how long the keepalive may stay unchanged")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="end the job when this process (our parent) dies")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command after --")
    if not args.fence_seconds > 0:  # also refuses NaN
        parser.error("--fence-seconds must be positive")
    return args


def _noop(_signum: int, _frame: object) -> None:
    pass


def _libc_call(name: str, *argv: object) -> None:
    if getattr(_LIBC, name)(*argv) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


# ---- cgroups --------------------------------------------------------------------------

def _make_cgroup(path: Path, limit: int) -> str | None:
    """Create the job's cgroup v2 with its memory cap; the reason it failed, or None."""
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.max").write_text(str(limit))
        swap = path / "memory.swap.max"
        if swap.exists():  # a cap that spills into swap is not a cap
            swap.write_text("0")
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    return None


def _make_v1_memory(path: Path, limit: int) -> str | None:
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(limit))
        swap = path / "memory.memsw.limit_in_bytes"
        with contextlib.suppress(OSError):  # only with swap accounting; must be >= the cap
            if swap.exists():
                swap.write_text(str(limit))
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    return None


def _make_v1_cpuset(path: Path, cores: str) -> str | None:
    try:
        path.mkdir(exist_ok=True)
        (path / "cpuset.mems").write_text((path.parent / "cpuset.mems").read_text())
        (path / "cpuset.cpus").write_text(cores)
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    return None


def _open_joins(groups: list[Path]) -> list[int]:
    """Open each cgroup's ``cgroup.procs`` now: the job writes "0" (itself) to them after
    cgroupfs is hidden from it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    return [os.open(group / "cgroup.procs", flags, 0o644) for group in groups]


def _empty_cgroup(path: Path) -> None:
    """Kill what is left in it and remove it."""
    kill = path / "cgroup.kill"
    with contextlib.suppress(OSError):
        if kill.exists():
            kill.write_text("1")
    for _ in range(100):  # the kernel empties a cgroup asynchronously after a kill
        pids = _pids_in(path)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap()
        try:
            path.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # EBUSY: still emptying; anything else is final
                return
            time.sleep(0.02)


def _pids_in(path: Path) -> list[int]:
    try:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
    # Never 0 or our own: kill(0) would signal our whole process group.
    return [p for p in pids if p > 0 and p != os.getpid()]


def _oom_kills(path: Path) -> int:
    for name in ("memory.events", "memory.oom_control"):
        with contextlib.suppress(OSError, ValueError):
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0


# ---- fencing ----------------------------------------------------------------------------

FENCE_CHECK_S = 0.5  # how often the keepalive and the parent are looked at


class Fence:
    """When must the job end so that it cannot run twice? Its agent's keepalive file
    unchanged for ``seconds`` (measured on the monotonic clock from the last change seen,
    so a wall-clock jump neither fences a healthy job nor spares a cut-off one; a missing
    file counts as unchanged), or its parent gone (reparented: getppid changes)."""

    def __init__(self, keepalive: str | None, seconds: float, parent: int | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keepalive, self.seconds, self.parent = keepalive, seconds, parent
        self._clock = clock
        self._seen = self._stamp()
        self._changed_at = clock()

    def _stamp(self) -> int | None:
        if self.keepalive is None:
            return None
        try:
            return os.stat(self.keepalive).st_mtime_ns
        except OSError:
            return None

    @property
    def active(self) -> bool:
        return self.keepalive is not None or self.parent is not None

    def reason(self) -> str | None:
        """Why the job must end now, or None while it may run on."""
        if self.parent is not None and os.getppid() != self.parent:
            return (f"fenced: its node agent (pid {self.parent}) died, so that it cannot "
                    "run twice")
        if self.keepalive is None:
            return None
        stamp, now = self._stamp(), self._clock()
        if stamp is not None and stamp != self._seen:
            self._seen, self._changed_at = stamp, now
            return None
        stale = now - self._changed_at
        if stale < self.seconds:
            return None
        return (f"fenced: its node agent's keepalive went stale for {stale:.1f} s: fenced "
                "so that it cannot run twice")


def _wait_or_fence(child: int, fence: Fence) -> tuple[int, str | None]:
    """The child's wait status, as ``os.waitpid``; with the reason when it was fenced.
    A fenced child is SIGKILLed (a namespace's init takes the namespace with it); what
    else of the tree is left goes with the launcher's usual end (``_kill_tree``)."""
    if not fence.active:
        return os.waitpid(child, 0)[1], None
    watch = None
    with contextlib.suppress(AttributeError, OSError):  # Linux >= 5.3: wake on its exit
        watch = os.pidfd_open(child)
    try:
        while True:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid == child:
                return status, None
            reason = fence.reason()
            if reason is not None:
                print(f"slicebox: {reason}", file=sys.stderr, flush=True)
                with contextlib.suppress(OSError):
                    os.kill(child, signal.SIGKILL)
                return os.waitpid(child, 0)[1], reason
            if watch is not None:
                select.select([watch], [], [], FENCE_CHECK_S)
            else:
                time.sleep(min(FENCE_CHECK_S, 0.1))
    finally:
        if watch is not None:
            os.close(watch)


# ---- the job's namespaces --------------------------------------------------------------

def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _libc_call("mount", source.encode() if source else None, target.encode(),
               fstype.encode() if fstype else None, ctypes.c_ulong(flags),
               data.encode() if data else None)


def _read_only(path: str) -> None:
    """``path`` and every mount below it, read-only (uid 0 without capabilities may
    still write root-owned files: sysctls, cgroupfs, sysfs attributes)."""
    with contextlib.suppress(OSError):
        _mount(path, path, None, MS_BIND | MS_REC)
    below = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1].replace("\\040", " ")
            if point == path or point.startswith(path.rstrip("/") + "/"):
                below.append(point)
    for point in dict.fromkeys(below):
        with contextlib.suppress(OSError):
            _mount(None, point, None,
                   MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _private_mounts(hide: list[str], data: str | None, keep: list[str] | None = None) -> None:
    """In a new mount namespace: the job's own /proc and /dev/shm (its staged dataset
    alone shown there, read-only); the state directory hidden; /sys (cgroupfs included)
    and /proc/sys read-only; no block devices."""
    _libc_call("unshare", CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do here reaches the host
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    staged = None
    if data and os.path.realpath(data).startswith("/dev/shm/"):
        data = os.path.realpath(data)
        staged = os.open(data, os.O_PATH | os.O_CLOEXEC)  # reachable once /dev/shm is new
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if staged is not None and data is not None:
        _show_staged(staged, data)
    _hide_block_devices(Path("/dev"))
    for path in ("/sys", "/proc/sys", "/proc/sysrq-trigger"):
        _read_only(path)
    for path in hide:
        if os.path.isdir(path):
            kept = _open_kept(path, keep or [])
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   "size=4k,mode=555")
            for inner, fd in kept.items():
                os.makedirs(inner, exist_ok=True)  # mount points in the fresh tmpfs
                _mount(f"/proc/self/fd/{fd}", inner, None, MS_BIND)
                os.close(fd)
            # Read-only from here: the job cannot fill or change what hides the folder.
            _mount(None, path, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                   "size=4k,mode=555")


def _open_kept(hidden: str, keep: list[str]) -> dict[str, int]:
    """The kept folders below ``hidden``, opened before it is covered (then unreachable
    by path). Only real directories, never through a link: the job made none of them."""
    kept = {}
    root = os.path.realpath(hidden).rstrip("/") + "/"
    for path in keep:
        real = os.path.realpath(path)
        if real.startswith(root) and os.path.isdir(real):
            kept[real] = os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return kept


def _show_staged(fd: int, path: str) -> None:
    """Bind the job's staged copy (other jobs' copies stay out of sight) read-only."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(path, exist_ok=True)
    else:
        open(path, "a").close()  # noqa: SIM115 - a mount point, nothing to write
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.close(fd)


def _hide_block_devices(folder: Path, depth: int = 0) -> None:
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISBLK(mode):
                with contextlib.suppress(OSError):
                    _mount("/dev/null", entry.path, None, MS_BIND)
            elif stat.S_ISDIR(mode) and depth < 3 and entry.name not in ("shm", "pts"):
                _hide_block_devices(Path(entry.path), depth + 1)


def _drop_capabilities() -> None:
    """A root job keeps uid 0 but no capability: it cannot mount, unhide, trace or raise
    its limits. The bounding set decides what an exec'd root program gets."""
    last = 63
    with contextlib.suppress(OSError, ValueError):
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _LIBC.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


# ---- the job ---------------------------------------------------------------------------

def _limit_child(mode: str, limit: int, joins: list[int]) -> None:
    """In the child, before exec: join the cgroups, or cap by rlimit."""
    for fd in joins:
        os.write(fd, b"0")  # "0": the writing process
        os.close(fd)
    if mode not in ("cgroup2", "cgroup1") and limit > 0:
        which = resource.RLIMIT_DATA if mode == "rlimit-data" else resource.RLIMIT_AS
        resource.setrlimit(which, (limit, limit))


def _die_with(launcher: int) -> None:
    """SIGKILL for us when the launcher dies, whoever kills it."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() not in (launcher, 0):  # it died before we asked (0: we are an init)
        os._exit(137)


def _exec_child(args: argparse.Namespace, mode: str, joins: list[int], env: dict[str, str],
                error_w: int, drop: bool = True) -> None:
    try:
        # Python ignores SIGPIPE and SIGXFSZ; an exec'd program expects the defaults.
        for name in ("SIGPIPE", "SIGXFSZ"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        _limit_child(mode, args.memory_bytes, joins)
        if drop:
            _drop_capabilities()
        os.execvpe(args.command[0], args.command, env)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        with contextlib.suppress(OSError):
            os.write(error_w, f"cannot run {args.command[0]!r}: {exc}".encode()[:4000])
    os._exit(127)


def _init(args: argparse.Namespace, mode: str, joins: list[int], env: dict[str, str],
          error_w: int, status_w: int, launcher: int) -> None:
    """Pid 1 of the job's namespace: set up its mounts, fork the job, reap every orphan
    and report the job's wait status. When it exits, the kernel kills the namespace."""
    try:
        _die_with(launcher)
        _private_mounts(args.hide, args.data, args.keep)
    except BaseException as exc:  # noqa: BLE001 - the job must not run unconfined
        with contextlib.suppress(OSError):
            os.write(error_w, f"cannot confine the job: {exc}".encode()[:4000])
        os._exit(126)
    job = os.fork()
    if job == 0:
        os.close(status_w)
        _exec_child(args, mode, joins, env, error_w, drop=True)
    for fd in (error_w, *joins):
        os.close(fd)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == job:
            os.write(status_w, str(status).encode())
            os._exit(0)


def _kill_tree(groups: list[Path]) -> None:
    """Whatever the job left behind goes: its process group, its cgroups, and every
    descendant (a subreaper inherits the orphans, so they are all our children)."""
    for _ in range(50):
        victims = _descendants(os.getpid())
        for group in groups:
            victims.update(_pids_in(group))
        victims.discard(os.getpid())
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
        _reap()


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _write_exit(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)  # readers see the old file or the whole new one, never a part


def _refuse(args: argparse.Namespace, error: str) -> int:
    """The job cannot start as composed: say why, where the controller will look."""
    print(f"slicebox: {error}", file=sys.stderr, flush=True)
    _write_exit(Path(args.exit_file), {
        "job_id": args.job_id, "attempt": args.attempt, "exit_code": 126, "error": error,
        "finished_at": time.time(), "launcher_pid": os.getpid()})
    return 126


def _job_env(args: argparse.Namespace) -> dict[str, str] | None:
    """The job's environment; None when the controller died while handing it over (an
    empty or cut-off JSON object: the controller always sends at least the job's id)."""
    if not args.env_stdin:
        return dict(os.environ)
    raw = sys.stdin.buffer.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the job's stdin, as before: nothing
    os.close(null)
    try:
        env = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(env, dict) or "SLICEBOX_JOB_ID" not in env:
        return None
    return {str(k): str(v) for k, v in env.items()}


def _setup_cgroups(args: argparse.Namespace) -> tuple[str, list[Path], str | None]:
    """(memory mode, the job's cgroups, a note when falling back to an rlimit)."""
    mode, groups = args.memory_mode, []
    memory = Path(args.cgroup) if args.cgroup else None
    failure = None
    if mode == "cgroup2":
        failure = _make_cgroup(memory, args.memory_bytes) if memory else "no --cgroup given"
    elif mode == "cgroup1" and memory is not None:
        failure = _make_v1_memory(memory, args.memory_bytes)
    elif mode == "cgroup1":
        mode = "rlimit-data"
    if failure:
        print(f"slicebox: cgroup memory limit unavailable: {failure}; using RLIMIT_DATA",
              file=sys.stderr, flush=True)
        mode = "rlimit-data"
    elif memory is not None and mode.startswith("cgroup"):
        groups.append(memory)
    if args.cpuset and args.cores:
        problem = _make_v1_cpuset(Path(args.cpuset), args.cores)
        if problem:  # the affinity still holds; the monitor checks it
            print(f"slicebox: cpuset unavailable: {problem}", file=sys.stderr, flush=True)
        else:
            groups.append(Path(args.cpuset))
    return mode, groups, failure


def _memory_verdict(groups: list[Path], limit: int) -> str | None:
    for group in groups:
        if _oom_kills(group) > 0:
            return (f"killed by the kernel: over its memory limit of {limit / GIB:.2f} GiB "
                    "(RAM, shared memory and /dev/shm files count)")
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    env = _job_env(args)
    if env is None:
        # Start nothing and leave no exit record: the attempt never ran, so the next
        # controller finds neither a process nor a result and requeues the job.
        print("slicebox: the controller did not hand over the job's environment (it died "
              "while starting the job); nothing was started", file=sys.stderr, flush=True)
        return 125
    # Watched from here: the agent has just launched us, so the keepalive's seconds count
    # from now; an agent already gone fences the job at the first look.
    fence = Fence(args.keepalive, args.fence_seconds, args.parent_pid)
    for name in _SURVIVE:
        signal.signal(getattr(signal, name), _noop)
    _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if args.cores:
        try:
            os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
        except (OSError, ValueError) as exc:  # e.g. a core this machine does not have
            return _refuse(args, f"cannot pin the job to cores {args.cores}: {exc}")
    mode, groups, _ = _setup_cgroups(args)
    env[MECHANISM_ENV] = f"{mode}:{args.cgroup}" if mode.startswith("cgroup") else mode
    private = args.private
    if private:
        try:
            _libc_call("unshare", CLONE_NEWPID)  # our next child is the namespace's init
        except OSError as exc:
            print(f"slicebox: no private namespaces ({exc}); the job shares ours",
                  file=sys.stderr, flush=True)
            private = False
    try:
        joins = _open_joins(groups)
    except OSError as exc:
        for group in groups:
            _empty_cgroup(group)
        return _refuse(args, f"cannot join the job's cgroup: {exc}")

    error_r, error_w = os.pipe()  # close-on-exec: EOF means the exec succeeded
    status_r, status_w = os.pipe()
    me = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(error_r)
        os.close(status_r)
        if private:
            _init(args, mode, joins, env, error_w, status_w, me)
        _die_with(me)
        _exec_child(args, mode, joins, env, error_w, drop=True)
    for fd in (error_w, status_w, *joins):
        os.close(fd)
    with os.fdopen(error_r, "rb") as pipe:
        error = pipe.read().decode(errors="replace") or None
    status, fenced = _wait_or_fence(child, fence)
    with os.fdopen(status_r, "rb") as pipe:
        reported = pipe.read().decode()
    if private and reported.isdigit():
        status = int(reported)  # the job's own status, as its init saw it
    code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
    if error:
        print(f"slicebox: {error}", file=sys.stderr, flush=True)
    _kill_tree(groups)
    verdict = _memory_verdict(groups, args.memory_bytes) if code != 0 and not fenced else None
    if verdict:
        print(f"slicebox: {verdict}", file=sys.stderr, flush=True)
    for group in groups:
        _empty_cgroup(group)
    record: dict[str, object] = {
        "job_id": args.job_id, "attempt": args.attempt, "exit_code": code,
        "error": fenced or error or verdict, "finished_at": time.time(), "launcher_pid": me}
    if fenced:
        record["fenced"] = True
    _write_exit(Path(args.exit_file), record)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
