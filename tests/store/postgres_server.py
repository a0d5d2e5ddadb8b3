"""A throw-away PostgreSQL server for the store tests: ``initdb`` into a temporary folder,
``postgres`` on 127.0.0.1 on a free port, removed again at the end.

PostgreSQL refuses to run as root, so as root the server runs as ``nobody`` (its data
folder handed over to it). It dies with the test process (``PR_SET_PDEATHSIG``), so a
killed test run leaves no server behind.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "slicebox"  # the database superuser initdb makes; trust auth, 127.0.0.1 only
_UNPRIVILEGED = "nobody"
_START_TIMEOUT_S = 60.0


class NoPostgres(Exception):
    """The PostgreSQL server programs are not installed here."""


def find_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: ``$SLICEBOX_PG_BINDIR``, the PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (not on the PATH there), newest first."""
    candidates: list[Path] = []
    if os.environ.get("SLICEBOX_PG_BINDIR"):
        candidates.append(Path(os.environ["SLICEBOX_PG_BINDIR"]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(d) for d in debian),
                         key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
                         reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise NoPostgres("PostgreSQL's initdb/postgres were not found (install Debian's "
                     "`postgresql` package, or set SLICEBOX_PG_BINDIR)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: SIGQUIT (PostgreSQL's immediate shutdown) when the
    # test process goes, however it goes.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    _as: dict[str, object]

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="sbx-pg-"))
        run_as: dict[str, object] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(_UNPRIVILEGED)
            except KeyError:
                raise RuntimeError(f"PostgreSQL refuses to run as root, and there is no "
                                   f"{_UNPRIVILEGED!r} account to run it as") from None
            os.chown(root, account.pw_uid, account.pw_gid)
            run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [],
                      "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
                              "HOME": str(root)}}
        data = root / "data"
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=120, check=False, **run_as)  # type: ignore[call-overload]
        if initdb.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()}")
        port = _free_port()
        # No durability needed for tests: fsync off makes CREATE DATABASE and commits fast.
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(root), "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"),  # noqa: SIM115
            preexec_fn=_die_with_parent, **run_as)  # type: ignore[call-overload]
        server = cls(bindir, root, port, process, run_as)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                log = (self.root / "server.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"postgres exited at start ({self.process.returncode}):\n"
                                   f"{log[-2000:]}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not accept connections within "
                                       f"{_START_TIMEOUT_S:.0f}s") from None
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name: made by the fixture, not input
        return self.url(name)

    def create_schema(self, database: str, name: str) -> str:
        """A new, empty schema in ``database``: the URL of a store that sees only it.
        (Milliseconds, where a new database copies its template: a second on a busy
        machine.)"""
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')  # name: made by the fixture, not input
        return f"{self.url(database)}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            # Immediate shutdown: no final checkpoint, as the data is thrown away next.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
