"""The Ray backend: one pool across the nodes of an existing Ray cluster.

Every Ray node runs a Slicebox agent (``agent.py``), the local backend of its node. The
pool is what the live agents report; it follows nodes joining (an agent is started on each
new one) and leaving. A one-node job goes to its node's agent; a gang goes through
``gang.py`` (a placement group, all ranks or none). Each agent keeps its jobs' logs; this
backend copies the new bytes into ``<state>/logs/<job-id>.log`` and reads progress from
that copy, as the local backend does from its own, so ``slicebox logs``, progress and
adoption offsets work unchanged.

A node is lost when Ray says it is dead, when its agent dies, or when its heartbeat has
not changed for ``heartbeat_timeout``. Its jobs come back from ``poll`` as
``Exited(node_lost=True)``, but only once nothing of them can still run: the node is
fenced (a marker its agent reads on every heartbeat) and ``fence_seconds`` (the time its
launchers allow a stale keepalive) plus a margin pass first. If it comes back, whatever it
still runs that the controller gave up on is killed before it is used again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicebox.backends.base import (
    BackendEvent,
    Breached,
    Exited,
    ExitRecord,
    LaunchError,
    Progress,
    Staged,
    StagingFailed,
    Started,
    apply_plan,
)
from slicebox.backends.local import HEADER
from slicebox.backends.logs import read_reports
from slicebox.errors import SliceboxError
from slicebox.pool.composition import Composition, Plan, Staging
from slicebox.pool.model import Node
from slicebox.store.records import JobRecord

log = logging.getLogger(__name__)

# Launchers check their keepalive every 0.5 s and then kill: this much after the fence
# time, nothing of a fenced job runs.
FENCE_MARGIN_SECONDS = 2.0
NODES_EVERY_SECONDS = 1.0  # how often Ray is asked which nodes are alive
CALL_TIMEOUT_SECONDS = 20.0
POLL_WAIT_SECONDS = 0.5  # how long one round waits for agents' answers
LOG_CHUNK = 4 << 20
SEES_TIMEOUT_SECONDS = 5.0  # asking every node whether it has a dataset


class RayUnavailable(SliceboxError):
    """The Ray cluster cannot be reached, or has no node an agent can run on."""


@dataclass
class _Agent:
    """What the controller knows of one node's agent."""

    node_id: str
    handle: Any
    describing: Any = None  # the pending describe() call
    info: Any = None  # AgentInfo once described
    pending: Any = None  # the pending collect() call; kept until it answers
    pending_jobs: tuple[str, ...] = ()
    beat: bytes | None = None
    beat_changed: float = field(default_factory=time.monotonic)
    lost_at: float | None = None  # declared lost (fenced) at, monotonic
    lost_why: str = ""
    reported: bool = False  # its jobs' node_lost exits handed out
    dead: bool = False  # its actor died (the node may live on: a new agent is made)

    @property
    def name(self) -> str | None:
        return self.info.node.name if self.info is not None else None


@dataclass
class _Job:
    """One running attempt: where its log comes from and how far it was read."""

    job: JobRecord
    node_id: str  # where its log (rank 0's) is
    nodes: tuple[str, ...]  # node ids of all its ranks
    log_path: Path
    offset: int  # progress read up to here, in our copy
    pulled: int  # next byte of the agent's log to copy
    gang: Any = None  # gang.GangHandle for a multi-node job
    exit: Exited | None = None  # seen; handed out once the log is copied to its end
    more_log: bool = False  # the last copy was as long as one read may be: more follows


class RayBackend:
    name = "ray"

    def __init__(self, state_dir: str | Path, address: str = "auto", *,
                 namespace: str = "slicebox", heartbeat_timeout: float = 30.0,
                 fence_seconds: float = 10.0, python: str = sys.executable,
                 agent_root: str | None = None, connect_timeout: float = 60.0) -> None:
        """``address``: the Ray cluster ("auto", or HOST:PORT of its GCS);
        ``heartbeat_timeout``: a node whose agent has not reached the GCS for this long is
        lost (it must exceed ``fence_seconds``, after which its jobs are already killed);
        ``agent_root``: where agents keep their state (default: each node's temp dir)."""
        if not 0 < fence_seconds < heartbeat_timeout:
            raise ValueError(f"need 0 < fence_seconds ({fence_seconds}) < heartbeat_timeout "
                             f"({heartbeat_timeout}): a node is declared lost only after "
                             "its jobs have fenced themselves")
        import ray

        self._ray = ray
        self.state_dir = Path(state_dir)
        self.logs_dir = self.state_dir / "logs"
        self.namespace = namespace
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.fence_seconds = float(fence_seconds)
        self._python = python
        self._agent_root = agent_root
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=address, namespace=namespace, include_dashboard=False,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {exc}") \
                    from None
        self._agents: dict[str, _Agent] = {}
        self._jobs: dict[str, _Job] = {}
        self._staging: dict[str, str] = {}  # job id -> node id copying its data
        self._staged_what: dict[str, Staging] = {}
        self._nodes_checked = 0.0
        self._gangs: Any = None
        self._refresh(force=True)
        self._wait_described(connect_timeout)

    # ---- the pool ----------------------------------------------------------------------

    def nodes(self) -> tuple[Node, ...]:
        self._refresh()
        self._collect_described()
        return tuple(sorted((a.info.node for a in self._agents.values()
                             if a.info is not None and a.lost_at is None),
                            key=lambda n: n.name))

    def node_address(self, name: str) -> str:
        return self._agent_named(name).info.ip

    def _refresh(self, force: bool = False) -> None:
        """Ask Ray which nodes are alive (at most once a second): start an agent on each
        new one, declare lost the nodes Ray says are dead or whose heartbeat is stale."""
        now = time.monotonic()
        if not force and now - self._nodes_checked < NODES_EVERY_SECONDS:
            return
        self._nodes_checked = now
        try:
            alive = {n["NodeID"] for n in self._ray.nodes() if n.get("Alive")}
        except Exception as exc:  # noqa: BLE001 - the GCS itself: judge nothing this round
            log.warning("cannot ask Ray for its nodes: %s", exc)
            return
        for node_id in alive - self._agents.keys():
            self._agents[node_id] = self._start_agent(node_id)
        for agent in list(self._agents.values()):
            if agent.node_id not in alive:
                if agent.lost_at is None:
                    self._declare_lost(agent, "Ray reports the node dead")
                elif agent.reported:
                    del self._agents[agent.node_id]  # a node id never comes back
                continue
            if agent.dead and agent.reported:
                # The node lives, its agent died: a new one, fenced until taken back.
                fresh = self._start_agent(agent.node_id)
                fresh.lost_at, fresh.lost_why, fresh.reported = (agent.lost_at,
                                                                 agent.lost_why, True)
                self._agents[agent.node_id] = agent = fresh
            self._watch_heartbeat(agent, now)

    def _start_agent(self, node_id: str) -> _Agent:
        from slicebox.backends.ray.agent import get_or_create_agent

        handle = get_or_create_agent(
            node_id, controller_state=str(self.state_dir.resolve()),
            fence_seconds=self.fence_seconds, python=self._python,
            namespace=self.namespace, state_root=self._agent_root)
        agent = _Agent(node_id, handle, describing=handle.attach.remote(
            str(self.state_dir.resolve())))
        if self._fenced_before(node_id):
            # An earlier controller declared it lost and did not live to take it back:
            # its jobs are fenced; it returns to the pool through ``_take_back``.
            agent.lost_at, agent.lost_why, agent.reported = (
                time.monotonic(), "fenced by an earlier controller", True)
        return agent

    def _fenced_before(self, node_id: str) -> bool:
        from ray.experimental import internal_kv

        from slicebox.backends.ray.agent import fence_key

        try:
            return internal_kv._internal_kv_get(fence_key(node_id),
                                                namespace=self.namespace) is not None
        except Exception:  # noqa: BLE001 - unknown: the agent's own refusal still holds
            return False

    def _wait_described(self, timeout: float) -> None:
        refs = [a.describing for a in self._agents.values() if a.describing is not None]
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=timeout)
        self._collect_described()
        if not any(a.info is not None for a in self._agents.values()):
            raise RayUnavailable("no Slicebox agent could start on any Ray node")

    def _collect_described(self) -> None:
        from ray.exceptions import RayError

        for agent in self._agents.values():
            if agent.describing is None:
                continue
            ready, _ = self._ray.wait([agent.describing], timeout=0)
            if not ready:
                continue
            try:
                info = self._ray.get(agent.describing)
            except RayError as exc:
                log.warning("agent on Ray node %s did not start: %s", agent.node_id, exc)
                agent.describing = None
                continue
            agent.describing = None
            taken = {a.name for a in self._agents.values() if a is not agent}
            if info.node.name in taken:
                log.warning("two Ray nodes are named %s; node %s is left out of the pool",
                            info.node.name, agent.node_id)
                continue
            agent.info = info

    def _watch_heartbeat(self, agent: _Agent, now: float) -> None:
        from ray.experimental import internal_kv

        from slicebox.backends.ray.agent import heartbeat_key

        try:
            beat = internal_kv._internal_kv_get(heartbeat_key(agent.node_id),
                                                namespace=self.namespace)
        except Exception:  # noqa: BLE001 - the GCS itself: nothing to judge nodes by
            return
        if beat != agent.beat:
            agent.beat, agent.beat_changed = beat, now
            if agent.lost_at is not None and agent.reported:
                self._take_back(agent)
            return
        if agent.lost_at is None and agent.info is not None \
                and now - agent.beat_changed > self.heartbeat_timeout:
            self._declare_lost(agent, f"its agent has not reached the cluster for "
                                      f"{now - agent.beat_changed:.0f} s")

    def _declare_lost(self, agent: _Agent, why: str) -> None:
        """Fence the node now; its jobs are reported once they cannot be running."""
        from ray.experimental import internal_kv

        from slicebox.backends.ray.agent import fence_key

        agent.lost_at, agent.lost_why, agent.reported = time.monotonic(), why, False
        log.warning("node %s lost: %s", agent.name or agent.node_id, why)
        with contextlib.suppress(Exception):
            internal_kv._internal_kv_put(fence_key(agent.node_id),
                                         json.dumps({"at": time.time(), "why": why}),
                                         namespace=self.namespace)

    def _report_lost(self) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        now = time.monotonic()
        for agent in self._agents.values():
            if agent.lost_at is None or agent.reported:
                continue
            if now < agent.lost_at + self.fence_seconds + FENCE_MARGIN_SECONDS:
                continue
            agent.reported = True
            name = agent.name or agent.node_id
            for tracked in list(self._jobs.values()):
                if agent.node_id not in tracked.nodes:
                    continue
                if tracked.gang is not None:
                    out = tracked.gang.node_lost(name)
                    events.extend(out)
                    if tracked.gang.done:
                        del self._jobs[tracked.job.id]
                    continue
                del self._jobs[tracked.job.id]
                events.append(Exited(tracked.job.id, tracked.job.attempt, None,
                                     error=f"node {name} was lost ({agent.lost_why})",
                                     node_lost=True))
            for job_id, node_id in list(self._staging.items()):
                if node_id == agent.node_id:
                    del self._staging[job_id]
                    staging = self._staged_what.pop(job_id)
                    events.append(StagingFailed(
                        job_id, staging, f"node {name} was lost while copying the data"))
        return events

    def _take_back(self, agent: _Agent) -> None:
        """A lost node reaches the cluster again: kill what it still runs that we gave
        up on, then lift its fence. Until that has worked it stays out of the pool."""
        from ray.experimental import internal_kv

        from slicebox.backends.ray.agent import fence_key

        live = {t.job.id: t.job.attempt for t in self._jobs.values()
                if agent.node_id in t.nodes}
        try:
            killed = self._call(agent.handle.kill_unless.remote(live))
            internal_kv._internal_kv_del(fence_key(agent.node_id), namespace=self.namespace)
            if not self._call(agent.handle.beat.remote()):
                raise RuntimeError("its heartbeat still fails")
        except Exception as exc:  # noqa: BLE001 - tried again at its next heartbeat
            log.warning("node %s is back but could not be fenced: %s", agent.name, exc)
            return
        if killed:
            log.warning("node %s is back; ended stale jobs there: %s", agent.name,
                        ", ".join(killed))
        agent.lost_at, agent.reported = None, False

    # ---- acting ------------------------------------------------------------------------

    def apply(self, plan: Plan, jobs: Mapping[str, JobRecord]) -> list[BackendEvent]:
        return apply_plan(self, plan, jobs)

    def stage(self, job: JobRecord, comp: Composition) -> None:
        if comp.staging is None:
            raise LaunchError(f"job {job.id}: nothing to stage")
        from slicebox.backends.ray.transfer import StagingRefused, choose_route

        agent = self._agent_named(comp.parts[0].node, job.id)
        sees = self._who_sees(comp.staging.source, first=agent)
        try:
            route = choose_route(comp.staging, agent.info.node.name, sees)
        except StagingRefused as exc:
            raise LaunchError(f"job {job.id}: {exc}") from None
        if route.pull_from is None:
            self._call_launch(agent, agent.handle.stage.remote(job, comp))
        else:
            source = self._agent_named(route.pull_from, job.id)
            self._call_launch(agent, agent.handle.pull.remote(job, comp, source.handle))
        self._staging[job.id] = agent.node_id
        self._staged_what[job.id] = comp.staging

    def launch(self, job: JobRecord, comp: Composition, *,
               extra_env: Mapping[str, str] | None = None) -> Started:
        if comp.multi_node:
            return self._launch_gang(job, comp)
        agent = self._agent_named(comp.node, job.id)
        started = self._call_launch(agent, agent.handle.launch.remote(job, comp, extra_env))
        return self._track(job, comp, started, agent, (agent.node_id,))

    def _launch_gang(self, job: JobRecord, comp: Composition) -> Started:
        from slicebox.backends.ray.gang import GangLauncher, RayGangAgent

        team = {}
        for name in comp.nodes:
            agent = self._agent_named(name, job.id)
            team[name] = RayGangAgent(agent.handle, name, agent.node_id, agent.info.ip,
                                      timeout_s=CALL_TIMEOUT_SECONDS)
        if self._gangs is None:
            self._gangs = GangLauncher()
        handle = self._gangs.start(job, comp, team)
        node_ids = tuple(team[n].node_id for n in comp.nodes)
        rank0 = self._agent_named(comp.nodes[0], job.id)
        return self._track(job, comp, handle.started, rank0, node_ids, gang=handle)

    def _track(self, job: JobRecord, comp: Composition, started: Started, agent: _Agent,
               node_ids: tuple[str, ...], gang: Any = None) -> Started:
        """Our copy of the log begins with our own header line for the attempt; the
        agent's log is copied from where its header ends."""
        self.logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{job.id}.log"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        header = (f"{HEADER}{job.attempt} at {stamp} on {comp.describe()} "
                  f"(Ray node {agent.node_id[:12]})\n")
        offset = _append(log_path, header.encode())
        self._jobs[job.id] = _Job(job, agent.node_id, node_ids, log_path, offset,
                                  started.log_offset, gang)
        self._staging.pop(job.id, None)
        return Started(job.id, job.attempt, started.pid, started.start_time, str(log_path),
                       offset)

    def stop(self, job: JobRecord) -> None:
        """The checkpoint signal (or, for a copy, its abort). A job this controller does
        not track (a copy still running after a restart) is stopped on the node its
        composition names, if that node is here."""
        tracked = self._jobs.get(job.id)
        if tracked is not None and tracked.gang is not None:
            tracked.gang.stop()
            return
        node_id = tracked.node_id if tracked is not None else self._staging.get(job.id)
        agent = self._agents.get(node_id) if node_id is not None else None
        if agent is None and tracked is None and job.composition is not None:
            agent = self._agents_by_name().get(job.composition.nodes[0])
        if agent is None or agent.lost_at is not None:
            return  # its node is lost: the job is reported once it is fenced
        with contextlib.suppress(LaunchError):
            self._call_launch(agent, agent.handle.stop.remote(job))

    def running(self) -> set[str]:
        """Jobs this controller watches (started, or adopted, and not yet ended)."""
        return set(self._jobs)

    def checkpoint_dir(self, job: JobRecord) -> Path:
        """Where the job keeps its checkpoints, as this controller reads them: its spec's
        ``checkpoint.path`` (relative to its workdir), else ``<state>/checkpoints/<job>``,
        the folder agents give jobs (storage every node mounts)."""
        named = job.spec.checkpoint.path
        if named:
            base = job.workdir or job.spec.workdir
            path = Path(named)
            return path if path.is_absolute() or base is None else Path(base) / path
        return self.state_dir.resolve() / "checkpoints" / job.id

    def copy_exists(self, node: str, path: str) -> bool:
        """Whether a staged copy is still at ``path`` on ``node`` (False: node gone)."""
        agent = self._agents_by_name().get(node)
        if agent is None or agent.lost_at is not None:
            return False
        try:
            return bool(self._call(agent.handle.sees_path.remote(path)))
        except Exception:  # noqa: BLE001 - a node that cannot answer has no copy for us
            return False

    def _who_sees(self, path: str, first: _Agent) -> dict[str, bool]:
        """For each live node (the target first), whether its agent sees ``path``."""
        live = [first, *(a for a in self._agents.values() if a is not first
                         and a.info is not None and a.lost_at is None)]
        refs = [a.handle.sees_path.remote(path) for a in live]
        # One wait for all: a node that does not answer soon is no source this time.
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=SEES_TIMEOUT_SECONDS)
        sees: dict[str, bool] = {}
        for agent, ref in zip(live, refs, strict=True):
            try:
                sees[agent.info.node.name] = ref in ready and bool(self._call(ref))
            except Exception:  # noqa: BLE001 - a node that cannot answer is no source
                sees[agent.info.node.name] = False
        return sees

    # ---- watching ----------------------------------------------------------------------

    def poll(self) -> list[BackendEvent]:
        """One round trip to every agent, in parallel (an agent that has not answered
        keeps its call: its events are taken next round, never asked for twice)."""
        from ray.exceptions import ActorDiedError, RayError

        self._refresh()
        self._collect_described()
        events: list[BackendEvent] = []
        for agent in self._agents.values():
            if agent.pending is None and agent.info is not None and agent.lost_at is None:
                offsets = {t.job.id: t.pulled for t in self._jobs.values()
                           if t.node_id == agent.node_id}
                agent.pending = agent.handle.collect.remote(offsets)
        pending = [a.pending for a in self._agents.values() if a.pending is not None]
        ready = set()
        if pending:
            done, _ = self._ray.wait(pending, num_returns=len(pending),
                                     timeout=POLL_WAIT_SECONDS)
            ready = set(done)
        for agent in list(self._agents.values()):
            if agent.pending is None or agent.pending not in ready:
                continue
            ref, agent.pending = agent.pending, None
            try:
                agent_events, chunks = self._ray.get(ref)
            except ActorDiedError as exc:
                agent.dead = True
                if agent.lost_at is None:
                    self._declare_lost(agent, f"its agent died ({type(exc).__name__})")
                continue
            except RayError as exc:
                log.warning("agent on %s failed to report: %s", agent.name, exc)
                continue
            if agent.lost_at is not None:
                continue  # reports from a lost node do not count
            events.extend(self._absorb(agent, agent_events, chunks))
        events.extend(self._finished_logs())
        events.extend(self._report_lost())
        return events

    def _absorb(self, agent: _Agent, agent_events: list[BackendEvent],
                chunks: Mapping[str, bytes]) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        now = time.time()
        for job_id, chunk in chunks.items():
            tracked = self._jobs.get(job_id)
            if tracked is None or tracked.node_id != agent.node_id:
                continue
            if chunk:
                _append(tracked.log_path, chunk)
                tracked.pulled += len(chunk)
            tracked.more_log = len(chunk) >= LOG_CHUNK
            out.extend(self._progress(tracked, now))
        for event in agent_events:
            out.extend(self._route(agent, event, chunks))
        return out

    def _route(self, agent: _Agent, event: BackendEvent,
               chunks: Mapping[str, bytes]) -> list[BackendEvent]:
        if isinstance(event, Staged | StagingFailed):
            if self._staging.get(event.job_id) != agent.node_id:
                return []
            del self._staging[event.job_id]
            self._staged_what.pop(event.job_id, None)
            return [event]
        tracked = self._jobs.get(event.job_id)
        if tracked is None or agent.node_id not in tracked.nodes:
            return []
        if tracked.gang is not None:
            out: list[BackendEvent] = list(tracked.gang.observe(agent.name, event))
            exits = [e for e in out if isinstance(e, Exited)]
            if exits:
                tracked.exit = exits[0]
                out = [e for e in out if not isinstance(e, Exited)]
            return out
        if not isinstance(event, Exited | Breached) or event.attempt != tracked.job.attempt:
            return []
        if isinstance(event, Exited):
            tracked.exit = event  # handed out once the log has been copied to its end
            return []
        return [event]

    def _finished_logs(self) -> list[BackendEvent]:
        """Exits whose last log lines have been copied (a chunk shorter than the most one
        read returns means the end)."""
        events: list[BackendEvent] = []
        for tracked in list(self._jobs.values()):
            if tracked.exit is None or tracked.more_log:
                continue
            del self._jobs[tracked.job.id]
            events.extend(self._progress(tracked, time.time()))
            events.append(tracked.exit)
        return events

    def _progress(self, tracked: _Job, now: float) -> list[BackendEvent]:
        reports, offset = read_reports(tracked.log_path, tracked.offset)
        moved = offset != tracked.offset
        tracked.offset = offset
        events: list[BackendEvent] = [
            Progress(tracked.job.id, r.time or now, r.samples, r.quality, offset)
            for r in reports]
        if moved and not events:
            events.append(Progress(tracked.job.id, now, None, None, offset))
        return events

    # ---- after a controller restart ----------------------------------------------------

    def adopt(self, job: JobRecord) -> Started | None:
        comp = job.composition
        if comp is None:
            return None
        agents = [self._agents_by_name().get(name) for name in comp.nodes]
        found: list[Started | None] = []
        for agent in agents:
            if agent is None or agent.lost_at is not None:
                found.append(None)
                continue
            try:
                found.append(self._call(agent.handle.adopt.remote(job)))
            except Exception:  # noqa: BLE001 - an agent that cannot answer holds nothing
                found.append(None)
        gang = None
        if all(s is not None for s in found) and comp.multi_node:
            gang = self._adopt_gang(job, comp, found)
        if any(s is None for s in found) or (comp.multi_node and gang is None):
            # Not every rank runs: what is left must not run on alone.
            for agent, started in zip(agents, found, strict=True):
                if agent is not None and started is not None:
                    with contextlib.suppress(Exception):
                        self._call(agent.handle.kill.remote(job.id, job.attempt))
            return None
        rank0, first = agents[0], found[0]
        assert rank0 is not None and first is not None
        log_path = Path(job.log_path) if job.log_path else self.logs_dir / f"{job.id}.log"
        start = _attempt_start(log_path, job.attempt)
        if start is None:  # started, but our header never written: write it now
            self.logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            start = _append(log_path, f"{HEADER}{job.attempt} (adopted) on "
                                      f"{comp.describe()}\n".encode())
        copied = _size(log_path) - start
        offset = max(job.log_offset, start)
        self._jobs[job.id] = _Job(job, rank0.node_id, tuple(
            a.node_id for a in agents if a is not None), log_path, offset,
            first.log_offset + copied, gang)
        return Started(job.id, job.attempt, first.pid, first.start_time, str(log_path),
                       offset)

    def _adopt_gang(self, job: JobRecord, comp: Composition,
                    found: list[Started | None]) -> Any:
        from slicebox.backends.ray import gang as gang_module

        adopt = getattr(gang_module, "adopt_gang", None)
        if adopt is None:
            return None
        team = {}
        for name in comp.nodes:
            agent = self._agent_named(name, job.id)
            team[name] = gang_module.RayGangAgent(agent.handle, name, agent.node_id,
                                                  agent.info.ip,
                                                  timeout_s=CALL_TIMEOUT_SECONDS)
        return adopt(job, comp, team, found)

    def exit_record(self, job: JobRecord) -> ExitRecord | None:
        comp = job.composition
        if comp is None:
            return None
        agent = self._agents_by_name().get(comp.nodes[0])
        if agent is None or agent.lost_at is not None:
            return None
        try:
            record = self._call(agent.handle.exit_record.remote(job))
        except Exception:  # noqa: BLE001 - unknown, as for a node that is gone
            return None
        return record if isinstance(record, ExitRecord) else None

    def close(self) -> None:
        """Stop watching; the agents (detached) keep running their jobs."""
        self._jobs.clear()
        self._staging.clear()
        if self._owns_ray:
            self._ray.shutdown()

    # ---- internals ---------------------------------------------------------------------

    def _agents_by_name(self) -> dict[str, _Agent]:
        return {a.name: a for a in self._agents.values() if a.name is not None}

    def _agent_named(self, name: str, job_id: str | None = None) -> _Agent:
        agent = self._agents_by_name().get(name)
        if agent is None or agent.lost_at is not None:
            what = f"job {job_id}: " if job_id else ""
            raise LaunchError(f"{what}node {name!r} is not in the Ray pool now")
        return agent

    def _call(self, ref: Any, timeout: float = CALL_TIMEOUT_SECONDS) -> Any:
        return self._ray.get(ref, timeout=timeout)

    def _call_launch(self, agent: _Agent, ref: Any) -> Any:
        """An agent call whose failure is the job's (LaunchError names the cause)."""
        from slicebox.backends.ray.gang import agent_result

        return agent_result(lambda: self._call(ref), str(agent.name))


def _append(path: Path, data: bytes) -> int:
    """Append to our copy of a log; its size after."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _attempt_start(log_path: Path, attempt: int) -> int | None:
    """Offset just after this attempt's header line in our copy (None: no such line)."""
    marker = f"{HEADER}{attempt} ".encode()
    try:
        data = log_path.read_bytes()
    except OSError:
        return None
    at = data.rfind(marker)
    if at < 0:
        return None
    end = data.find(b"\n", at)
    return end + 1 if end >= 0 else len(data)
