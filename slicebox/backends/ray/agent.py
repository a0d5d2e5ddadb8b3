"""The node agent: one detached Ray actor per Ray node, running that node's jobs.

Inside, it is the local backend for its own node (same launcher, pinning, memory limit,
cgroups, staging), with a state folder of its own. It outlives the controller that made
it (detached, found again by name), so a new controller adopts the jobs it still runs.

Fencing. A heartbeat thread makes a round trip to Ray's GCS every second (it reads this
node's fence marker and writes its heartbeat), and only after that succeeds touches the
keepalive file its jobs' launchers watch. A node cut off from the cluster, or a frozen
agent, stops touching it, and the launchers kill their jobs after ``fence_seconds``; a
dead *controller* does not (the GCS is still there), so jobs outlive their controller.
A controller that has declared this node lost writes the fence marker: from then on the
agent touches nothing and ends its jobs, until the controller, having fenced what was
stale (``kill_unless``), takes the node back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from slicebox.backends import procs
from slicebox.backends.base import (
    BackendEvent,
    Exited,
    ExitRecord,
    LaunchError,
    Progress,
    Started,
)
from slicebox.backends.isolation import Isolation
from slicebox.backends.local import LocalBackend
from slicebox.backends.ray import transfer
from slicebox.backends.ray.nodes import describe_this_node
from slicebox.pool.composition import Composition
from slicebox.pool.model import Node
from slicebox.store.records import JobRecord

NAMESPACE = "slicebox"
HEARTBEAT_SECONDS = 1.0
MAX_LOG_READ = 4 << 20  # bytes per read_log call: one chatty job must not stall a round
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def agent_name(node_id: str) -> str:
    return f"slicebox-agent-{node_id}"


def heartbeat_key(node_id: str) -> str:
    return f"slicebox/heartbeat/{node_id}"


def fence_key(node_id: str) -> str:
    return f"slicebox/fenced/{node_id}"


@dataclass(frozen=True)
class AgentInfo:
    """What an agent says about itself (``describe``)."""

    node_id: str
    node: Node
    ip: str
    pid: int  # the actor's worker process (tests freeze it)
    state_dir: str
    incarnation: str  # changes when the actor is made again on the same node


@dataclass(frozen=True)
class _Launched:
    """One attempt this agent started, kept on disk so that an agent made again on the
    same node (its actor died) can still find and fence it."""

    job_id: str
    attempt: int
    pid: int
    start_time: float
    log_offset: int  # where this attempt's output begins in the agent's log


def _checked_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


class Agent:
    """The body of ``NodeAgent`` (a plain class, so its logic reads without Ray)."""

    def __init__(self, node_id: str, controller_state: str, fence_seconds: float,
                 python: str, state_root: str | None = None) -> None:
        here = ray.get_runtime_context().get_node_id()
        if here != node_id:  # pinned with soft=False: this would be a Ray bug
            raise RuntimeError(f"agent for node {node_id} started on node {here}")
        self.node_id = node_id
        self.node, self.ip = describe_this_node(node_id)
        root = Path(state_root) if state_root else Path(tempfile.gettempdir())
        # Per node: on a one-machine test cluster every node shares the file system.
        self.state_dir = root / f"slicebox-agent-{node_id[:12]}"
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.launched_dir = self.state_dir / "launched"
        self.launched_dir.mkdir(mode=0o700, exist_ok=True)
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        # One keepalive per incarnation: an agent made again never keeps alive the jobs of
        # the one before it (their controller has reported them lost; they are fenced).
        for old in self.state_dir.glob("keepalive-*"):
            old.unlink(missing_ok=True)
        self.keepalive = self.state_dir / f"keepalive-{self.incarnation}"
        self.keepalive.touch(mode=0o600)
        self.fence_seconds = float(fence_seconds)
        # The controller's interpreter, where this node has it (same paths everywhere is
        # the usual setup); else the one this agent runs under.
        python = python if Path(python).is_file() else sys.executable
        self._local = LocalBackend(
            self.state_dir, node=self.node.name, python=python, base_env=_job_base_env(),
            checkpoint_root=Path(controller_state) / "checkpoints",
            keepalive=self.keepalive, fence_seconds=self.fence_seconds,
            die_with_parent=True)
        self._local.isolation = _own_cgroups(self._local.isolation, f"agent-{node_id[:12]}")
        # Data that only another node has comes through Ray, chunk by chunk (transfer.py).
        self._pulls = transfer.PullStager()
        self._lock = threading.RLock()
        self._last_ok = time.monotonic()
        self._fenced = False
        self._beat()
        self._thread = threading.Thread(target=self._heartbeat, name="slicebox-heartbeat",
                                        daemon=True)
        self._thread.start()

    # ---- what the controller calls -----------------------------------------------------

    def describe(self) -> AgentInfo:
        return AgentInfo(self.node_id, self.node, self.ip, os.getpid(),
                         str(self.state_dir), self.incarnation)

    def attach(self, controller_state: str) -> AgentInfo:
        """A controller takes this agent over: jobs it starts from now on keep their
        checkpoints under that controller's ``<state>/checkpoints`` (which every node
        mounts), wherever the agent's first controller kept them."""
        with self._lock:
            self._local.checkpoint_root = Path(controller_state) / "checkpoints"
            return self.describe()

    def launch(self, job: JobRecord, comp: Composition,
               extra_env: Mapping[str, str] | None = None) -> Started:
        """Start this node's part of ``comp`` (the whole of it for one node; one rank of a
        gang, whose rank variables come in ``extra_env``)."""
        with self._lock:
            if self._fenced:
                raise LaunchError(f"node {self.node.name} was declared lost by its "
                                  "controller and is fenced: it starts nothing")
            age = time.monotonic() - self._last_ok
            if age > self.fence_seconds / 2:
                raise LaunchError(f"node {self.node.name} has not reached the Ray cluster "
                                  f"for {age:.1f} s: it starts nothing")
            started = self._local.launch(job, self._own_part(job, comp),
                                         extra_env=dict(extra_env or {}))
            self._remember(_Launched(job.id, job.attempt, started.pid, started.start_time,
                                     started.log_offset))
            return started

    def stage(self, job: JobRecord, comp: Composition) -> None:
        with self._lock:
            self._local.stage(job, self._own_part(job, comp))

    def pull(self, job: JobRecord, comp: Composition, source_agent: Any) -> None:
        """Copy the job's dataset from the node of ``source_agent`` (an agent handle)
        to its staging target here; a Staged or StagingFailed follows from ``poll``."""
        staging = self._own_part(job, comp).staging
        if staging is None:
            raise LaunchError(f"job {job.id}: nothing to stage on {self.node.name}")
        with self._lock:
            self._pulls.start(job.id, staging, transfer.RaySource(source_agent))

    def stop(self, job: JobRecord) -> None:
        with self._lock:
            if self._pulls.abort(job.id):
                return  # its StagingFailed(error=None) follows
            self._local.stop(job)

    # The source side of a pull, and what a node can see (thin: transfer.py does it).
    def transfer_manifest(self, source: str, limit: int) -> list[transfer.Entry]:
        return transfer.manifest(source, limit)

    def transfer_chunk(self, source: str, rel: str, offset: int, length: int) -> bytes:
        return transfer.read_chunk(source, rel, offset, length)

    def sees_path(self, path: str) -> bool:
        return transfer.visible(path)

    def poll(self) -> list[BackendEvent]:
        """Exits, breaches and copies since the last call. Progress is left out: the
        controller reads it from its own copy of the log (``read_log``)."""
        with self._lock:
            events: list[BackendEvent] = [e for e in self._local.poll()
                                          if not isinstance(e, Progress)]
            events.extend(transfer.event_of(r) for r in self._pulls.poll())
            for event in events:
                if isinstance(event, Exited):
                    self._forget(event.job_id, event.attempt)
            return events

    def collect(self, offsets: Mapping[str, int]) -> tuple[list[BackendEvent], dict[str, bytes]]:
        """``poll`` and, after it (so an exit's last lines are in), each job's log from
        the offset given: one round trip per agent per controller round."""
        events = self.poll()
        return events, {job_id: self.read_log(job_id, offset)
                        for job_id, offset in offsets.items()}

    def read_log(self, job_id: str, offset: int, max_bytes: int = MAX_LOG_READ) -> bytes:
        """Up to ``max_bytes`` of the job's log on this node, from ``offset``."""
        path = self._local.logs_dir / f"{_checked_job_id(job_id)}.log"
        try:
            with open(path, "rb") as log:
                log.seek(max(int(offset), 0))
                return log.read(max(0, min(int(max_bytes), MAX_LOG_READ)))
        except OSError:
            return b""

    def adopt(self, job: JobRecord) -> Started | None:
        """The attempt's process on this node, if it still runs; this agent keeps it."""
        with self._lock:
            record = self._record(job.id)
            if record is None or record.attempt != job.attempt:
                return None
            if not procs.alive(record.pid, record.start_time):
                return None  # ended: its exit record (or the next poll) says how
            log_path = str(self._local.logs_dir / f"{job.id}.log")
            if job.id not in self._local.running():
                # This agent was made again: take the process over from its record.
                mine = replace(job, pid=record.pid, pid_start_time=record.start_time,
                               log_path=log_path, log_offset=record.log_offset)
                if self._local.adopt(mine) is None:
                    return None
            return Started(job.id, job.attempt, record.pid, record.start_time, log_path,
                           record.log_offset)

    def exit_record(self, job: JobRecord) -> ExitRecord | None:
        with self._lock:
            return self._local.exit_record(job)

    def running(self) -> dict[str, int]:
        """{job id: attempt} of what this agent started and has not seen end."""
        with self._lock:
            return {r.job_id: r.attempt for r in self._records()
                    if procs.alive(r.pid, r.start_time)}

    def kill_unless(self, live: Mapping[str, int]) -> list[str]:
        """SIGKILL every attempt started here that is not ``live`` ({job id: attempt}):
        after a partition heals, what the controller has given up on must not run on."""
        with self._lock:
            return self._kill_unless(live)

    def kill(self, job_id: str, attempt: int) -> bool:
        """SIGKILL that one attempt if it runs here (a gang rank left alone)."""
        with self._lock:
            record = self._record(job_id)
            if record is None or record.attempt != attempt:
                return False
            return self._kill_record(record)

    def beat(self) -> bool:
        """One heartbeat now (the controller, having lifted this node's fence, makes the
        agent see so before it sends it work); did it reach the GCS, unfenced?"""
        return self._beat()

    def heartbeat_age(self) -> float:
        """Seconds since the last successful round trip to the GCS."""
        return time.monotonic() - self._last_ok

    def free_port(self) -> int:
        """A TCP port free on this node now (a gang's MASTER_PORT)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            return int(sock.getsockname()[1])

    # ---- internals ---------------------------------------------------------------------

    def _own_part(self, job: JobRecord, comp: Composition) -> Composition:
        mine = [p for p in comp.parts if p.node == self.node.name]
        if len(mine) != 1:
            raise LaunchError(f"job {job.id} has no part on node {self.node.name} "
                              f"(its nodes: {', '.join(comp.nodes)})")
        staging = comp.staging if comp.parts[0].node == self.node.name else None
        return Composition(comp.job_id, (mine[0],), comp.data_path, staging)

    def _heartbeat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            self._beat()

    def _beat(self) -> bool:
        """One round trip; touch the keepalive only if it succeeded, quickly, and the
        controller has not fenced this node."""
        began, clock = time.time(), time.monotonic()
        try:
            marker = internal_kv._internal_kv_get(fence_key(self.node_id),
                                                  namespace=NAMESPACE)
            internal_kv._internal_kv_put(
                heartbeat_key(self.node_id),
                json.dumps({"time": began, "incarnation": self.incarnation}),
                namespace=NAMESPACE)
        except Exception:  # noqa: BLE001 - any failure to reach the GCS is a missed beat
            return False
        if marker is not None:
            self._fenced = True
            with self._lock:
                self._kill_unless({})
            return False
        self._fenced = False
        if time.monotonic() - clock > self.fence_seconds / 2:
            return False  # too slow to count: the controller may already have given up
        # Stamped with when the round trip began: never later than what the GCS saw.
        with contextlib.suppress(OSError):
            os.utime(self.keepalive, (began, began))
        self._last_ok = clock
        return True

    def _kill_unless(self, live: Mapping[str, int]) -> list[str]:
        killed = []
        for record in self._records():
            if live.get(record.job_id) == record.attempt:
                continue
            if self._kill_record(record):
                killed.append(record.job_id)
        return killed

    def _kill_record(self, record: _Launched) -> bool:
        alive = procs.alive(record.pid, record.start_time)
        if alive:
            # The launcher leads its job's process group; its namespace's init dies with it.
            procs.kill_group(record.pid, signal.SIGKILL)
        if record.job_id not in self._local.running():
            self._forget(record.job_id, record.attempt)  # no exit will come to say so
        return alive

    def _remember(self, record: _Launched) -> None:
        path = self.launched_dir / f"{record.job_id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record.__dict__))
        tmp.replace(path)

    def _forget(self, job_id: str, attempt: int) -> None:
        record = self._record(job_id)
        if record is not None and record.attempt == attempt:
            (self.launched_dir / f"{job_id}.json").unlink(missing_ok=True)

    def _record(self, job_id: str) -> _Launched | None:
        try:
            data: dict[str, Any] = json.loads(
                (self.launched_dir / f"{_checked_job_id(job_id)}.json").read_text())
            return _Launched(str(data["job_id"]), int(data["attempt"]), int(data["pid"]),
                             float(data["start_time"]), int(data["log_offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _records(self) -> list[_Launched]:
        found = []
        for path in sorted(self.launched_dir.glob("*.json")):
            record = self._record(path.stem)
            if record is not None:
                found.append(record)
        return found


def _job_base_env() -> dict[str, str]:
    """The agent's environment without what Ray sets for its own worker (its job id, its
    raylet's pid, its debugger hook): a job is not a Ray worker and must not act as one."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("RAY_") and k != "SPT_NOENV"
            and not (k == "PYTHONBREAKPOINT" and v.startswith("ray."))}


def _own_cgroups(iso: Isolation, name: str) -> Isolation:
    """Job cgroups under a child of this agent's own: cgroups are named by job and
    attempt, and a gang's ranks share both, so on a machine that hosts several Ray nodes
    (a test cluster) one rank's launcher emptying its cgroup would kill another rank."""
    parents: dict[str, Path | None] = {}
    for field_name in ("memory_parent", "cpuset_parent"):
        parent: Path | None = getattr(iso, field_name)
        if parent is None:
            parents[field_name] = None
            continue
        child = parent / name
        try:
            child.mkdir(exist_ok=True)
            if field_name == "cpuset_parent":  # empty until given cores and memory nodes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (child / knob).read_text().strip():
                        (child / knob).write_text((parent / knob).read_text())
            elif iso.version == "v2":
                (child / "cgroup.subtree_control").write_text("+memory")
        except OSError:
            return iso  # as it was: only a one-machine cluster's gangs share a name
        parents[field_name] = child
    return replace(iso, memory_parent=parents["memory_parent"],
                   cpuset_parent=parents["cpuset_parent"])


# Detached and named, so a new controller finds it; no CPU of its own, so it never takes
# a core a job was placed on; one call at a time (the heartbeat is its own thread).
NodeAgent = ray.remote(num_cpus=0, max_restarts=0)(Agent)


def get_or_create_agent(node_id: str, *, controller_state: str, fence_seconds: float,
                        python: str, namespace: str = NAMESPACE,
                        state_root: str | None = None) -> Any:
    """The agent of a Ray node: found by name, or made there (pinned, detached)."""
    return NodeAgent.options(
        name=agent_name(node_id), namespace=namespace, lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(node_id, controller_state, fence_seconds, python, state_root)
