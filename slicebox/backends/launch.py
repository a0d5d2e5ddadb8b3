"""The launcher: the parent of every local job, so its composition holds from the first
instruction and its exit code is never lost.

    python -P launch.py --job-id ID --attempt N --exit-file PATH \
        [--cores 0,1] [--memory-bytes B --memory-mode rlimit-data|rlimit-as|cgroup2] \
        [--cgroup DIR] -- argv...

It pins itself to the cores (the job inherits them), forks, and the child sets the memory
limit and ``exec``s the argv: no shell, no window in which the job runs unconfined. The
launcher then waits, and writes the exit code to ``--exit-file`` atomically: a controller
that was restarted meanwhile is not the job's parent and could not learn it otherwise.

Standard library only, run as a file: it starts fast and needs nothing installed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

MECHANISM_ENV = "SLICEBOX_MEMORY_LIMIT_MECHANISM"
# Signals a stop or a terminal might send to the whole process group. The job decides
# what they mean (checkpoint, exit); the launcher must outlive it to report its exit code.
_SURVIVE = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
            "SIGPWR", "SIGXCPU")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slicebox-launch")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--exit-file", required=True)
    parser.add_argument("--cores", default="")
    parser.add_argument("--memory-bytes", type=int, default=0)
    parser.add_argument("--memory-mode", default="rlimit-data",
                        choices=("rlimit-as", "rlimit-data", "cgroup2"))
    parser.add_argument("--cgroup", default=None, help="cgroup v2 directory for this job")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command after --")
    return args


def _noop(_signum: int, _frame: object) -> None:
    pass


def _make_cgroup(path: Path, limit: int) -> str | None:
    """Create the job's cgroup with its memory cap; the reason it failed, or None."""
    try:
        path.mkdir(exist_ok=True)
        (path / "memory.max").write_text(str(limit))
        swap = path / "memory.swap.max"
        if swap.exists():  # a cap that spills into swap is not a cap
            swap.write_text("0")
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    return None


def _limit_child(mode: str, limit: int, cgroup: Path | None) -> None:
    """In the child, before exec: join the cgroup, or cap by rlimit."""
    if mode == "cgroup2" and cgroup is not None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    elif limit > 0:
        which = resource.RLIMIT_DATA if mode == "rlimit-data" else resource.RLIMIT_AS
        resource.setrlimit(which, (limit, limit))


def _exec_child(args: argparse.Namespace, mode: str, cgroup: Path | None, error_w: int) -> None:
    try:
        # Python ignores SIGPIPE and SIGXFSZ; an exec'd program expects the defaults.
        for name in ("SIGPIPE", "SIGXFSZ"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        _limit_child(mode, args.memory_bytes, cgroup)
        os.execvp(args.command[0], args.command)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        with contextlib.suppress(OSError):
            os.write(error_w, f"cannot run {args.command[0]!r}: {exc}".encode()[:4000])
    os._exit(127)


def _kill_leftovers() -> None:
    """Processes the job left behind in its process group (workers, helpers) go too."""
    me, group = os.getpid(), os.getpgid(0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == group:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue


def _remove_cgroup(path: Path) -> None:
    kill = path / "cgroup.kill"
    with contextlib.suppress(OSError):
        if kill.exists():
            kill.write_text("1")
    for _ in range(50):  # the kernel empties a cgroup asynchronously after the kill
        try:
            path.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # EBUSY: still emptying; anything else is final
                return
            time.sleep(0.02)


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


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    for name in _SURVIVE:
        signal.signal(getattr(signal, name), _noop)
    if args.cores:
        try:
            os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
        except (OSError, ValueError) as exc:  # e.g. a core this machine does not have
            return _refuse(args, f"cannot pin the job to cores {args.cores}: {exc}")
    mode, cgroup = args.memory_mode, Path(args.cgroup) if args.cgroup else None
    if mode == "cgroup2":
        failure = _make_cgroup(cgroup, args.memory_bytes) if cgroup else "no --cgroup given"
        if failure:
            print(f"slicebox: cgroup memory limit unavailable: {failure}; using RLIMIT_DATA",
                  file=sys.stderr, flush=True)
            mode, cgroup = "rlimit-data", None
    os.environ[MECHANISM_ENV] = f"cgroup2:{cgroup}" if cgroup else mode

    error_r, error_w = os.pipe()  # close-on-exec: EOF means the exec succeeded
    child = os.fork()
    if child == 0:
        os.close(error_r)
        _exec_child(args, mode, cgroup, error_w)
    os.close(error_w)
    with os.fdopen(error_r, "rb") as pipe:
        error = pipe.read().decode(errors="replace") or None
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
    if error:
        print(f"slicebox: {error}", file=sys.stderr, flush=True)
    _kill_leftovers()
    if cgroup is not None:
        _remove_cgroup(cgroup)
    _write_exit(Path(args.exit_file), {
        "job_id": args.job_id, "attempt": args.attempt, "exit_code": code, "error": error,
        "finished_at": time.time(), "launcher_pid": os.getpid()})
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
