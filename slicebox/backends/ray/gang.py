"""Gang jobs on Ray: a composition with one part per node, run as one rank per part.

All ranks start together or none does. Ray reserves the gang first: one placement-group
bundle per part, each pinned to its part's node (``bundle_label_selector`` on Ray's own
``ray.io/node-id`` label), so nothing else scheduled through Ray takes those cores or GPUs
while the ranks start. Only once every bundle is reserved are the ranks launched, in
parallel, each through its node's agent with its own one-part composition and the
``torch.distributed`` variables; if any launch fails, the ranks already started are killed
and the job gets one ``LaunchError``.

While it runs, the events each node's agent reports for the job come through
``GangHandle.observe``, which turns the ranks into one job for the controller: progress is
rank 0's; the attempt ends when rank 0 ends or any rank fails, and the other ranks are
stopped then; a node lost under any rank is the job's node loss (it is requeued and
resumes from its checkpoint, every rank with it). The one ``Exited`` is reported only once
every rank has ended, so the controller never hands out cores a rank still holds.

Ray is imported only inside ``RayReserver``: the rest is plain Python and tested without it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from slicebox.backends import env
from slicebox.backends.base import (
    BackendEvent,
    Breached,
    Exited,
    LaunchError,
    Progress,
    Staged,
    StagingFailed,
    Started,
)
from slicebox.pool.composition import Composition, Part
from slicebox.pool.slices import SliceType
from slicebox.spec.job import JobSpec
from slicebox.store.records import JobRecord

# The spec's spread rule, in Ray's placement-group strategies (docs/architecture.md).
STRATEGIES = {"one_node": "STRICT_PACK", "pack": "PACK", "spread": "SPREAD"}
# A CPU-only gang asked for with ``resources.nodes``: one rank per node, never two on one.
NODES_STRATEGY = "STRICT_SPREAD"
NODE_LABEL = "ray.io/node-id"  # set by Ray itself on every node
# Slicebox placed the parts on what it knows is free, so Ray grants them in well under a
# second (0.5-0.8 s measured on the 3-node test cluster); a longer wait means something
# outside Slicebox holds them, and the controller's round must not stall on it.
DEFAULT_READY_TIMEOUT_S = 10.0


class GangAgent(Protocol):
    """What a gang needs of one node's agent. Synchronous: the Ray backend wraps the
    agent actor (each call a ``ray.get``); the tests use plain objects."""

    node: str  # the pool node's name, as ``Part.node`` names it
    node_id: str  # the Ray node id (hex)
    address: str  # the node's IP address

    def free_port(self) -> int:
        """A TCP port nothing listens on, on that node (rank 0's: ``MASTER_PORT``)."""
        ...

    def launch(self, job: JobRecord, comp: Composition, env: Mapping[str, str]) -> Started:
        """Start one rank: ``comp`` is its one-part composition, ``env`` the variables to
        add to its environment once the job's own is built. Raises LaunchError."""
        ...

    def stop(self, job: JobRecord) -> None:
        """As ``LocalBackend.stop``: the checkpoint signal, SIGKILL after the job's grace
        period (at once when it is 0)."""
        ...


class Reservation(Protocol):
    def remove(self) -> None: ...


class Reserver(Protocol):
    def reserve(self, name: str, bundles: Sequence[Mapping[str, float]], strategy: str,
                node_ids: Sequence[str], node_names: Sequence[str],
                timeout_s: float) -> Reservation:
        """Reserve every bundle on its node, or raise LaunchError naming the nodes that
        could not be reserved (with nothing left reserved)."""
        ...

    def find(self, name: str) -> Reservation | None:
        """The reservation of that name, made by an earlier controller (None: gone)."""
        ...


# -- the pure parts -------------------------------------------------------------------------

def strategy_for(spec: JobSpec, comp: Composition) -> str:
    """Ray's strategy for the job's placement group; LaunchError when the spec's rule
    cannot hold for this composition (``one_node`` over several nodes)."""
    res = spec.resources
    if res.nodes > 1:
        return NODES_STRATEGY
    if res.spread == "one_node" and comp.multi_node:
        raise LaunchError(f"job {comp.job_id}: resources.spread is one_node, but its "
                          f"composition spans {len(comp.parts)} nodes "
                          f"({', '.join(comp.nodes)})")
    return STRATEGIES[res.spread]


def bundle_for(part: Part) -> dict[str, float]:
    """One part as a Ray bundle: its cores, and its whole GPUs. MIG instances and shares
    of a card are Slicebox's own accounting (Ray counts only whole GPUs by default)."""
    bundle: dict[str, float] = {"CPU": float(len(part.cores))}
    whole = sum(1 for s in part.slices if s.shape is SliceType.WHOLE)
    if whole:
        bundle["GPU"] = float(whole)
    return bundle


def group_name(job_id: str, attempt: int) -> str:
    """The placement group of one attempt: found again by name after a controller
    restart, and never confused with another attempt's."""
    return f"slicebox-{job_id}-a{attempt}"


def rank_composition(comp: Composition, rank: int) -> Composition:
    """The one-part composition rank ``rank`` runs under (the first part is rank 0, the
    node data is staged on)."""
    part = comp.parts[rank]
    staging = comp.staging if rank == 0 else None
    return Composition(comp.job_id, (part,), comp.data_path, staging)


def rank_environment(master_addr: str, master_port: int, world_size: int,
                     rank: int) -> dict[str, str]:
    """What ``torch.distributed``'s ``env://`` initialisation reads, and the gang's
    ``SLICEBOX_WORLD_SIZE``/``SLICEBOX_RANK`` (``env.py`` spells them; the local backend
    lets exactly these two through ``extra_env``); one process per node, so
    ``LOCAL_RANK`` is 0 on every node."""
    try:
        return env.rank_environment(rank, world_size, master_addr, master_port, local_rank=0)
    except ValueError as exc:  # e.g. an agent that reported no address
        raise LaunchError(f"rank {rank} of {world_size}: {exc}") from None


def without_grace(job: JobRecord) -> JobRecord:
    """``job`` with a grace period of 0: a stop kills at once. For ranks that have just
    started and are rolled back: they have nothing to save."""
    checkpoint = job.spec.checkpoint.model_copy(update={"grace_seconds": 0})
    return replace(job, spec=job.spec.model_copy(update={"checkpoint": checkpoint}))


def short_nodes(bundles: Sequence[Mapping[str, float]], node_ids: Sequence[str],
                node_names: Sequence[str], alive: Mapping[str, Mapping[str, float]]
                ) -> list[str]:
    """Why the bundles cannot be reserved now: ``alive`` maps each live Ray node id to
    the resources it has free. One line per node that lacks something, naming it (bundles
    pinned to one node are counted together)."""
    wanted: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    for bundle, node_id, name in zip(bundles, node_ids, node_names, strict=True):
        total = wanted.setdefault(node_id, {})
        names.setdefault(node_id, name)
        for key, amount in bundle.items():
            total[key] = total.get(key, 0.0) + amount
    reasons = []
    for node_id, need in wanted.items():
        free = alive.get(node_id)
        if free is None:
            reasons.append(f"{names[node_id]} (Ray node {node_id[:12]} is not in the cluster)")
            continue
        short = [f"{key} {need[key]:g} wanted, {free.get(key, 0.0):g} free"
                 for key in sorted(need) if free.get(key, 0.0) + 1e-9 < need[key]]
        if short:
            reasons.append(f"{names[node_id]} ({'; '.join(short)})")
    return reasons


def failed(event: Exited) -> bool:
    return event.error is not None or event.exit_code != 0


# -- Ray ------------------------------------------------------------------------------------

class RayReservation:
    def __init__(self, group: Any) -> None:
        self.group = group

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        with contextlib.suppress(Exception):  # already gone (removed, or its job ended)
            remove_placement_group(self.group)


class RayReserver:
    """Placement groups on the Ray cluster this process is connected to."""

    def reserve(self, name: str, bundles: Sequence[Mapping[str, float]], strategy: str,
                node_ids: Sequence[str], node_names: Sequence[str],
                timeout_s: float) -> RayReservation:
        import ray
        from ray.util.placement_group import placement_group

        # Detached: it outlives a controller that crashes, so the ranks it reserved for
        # stay reserved until the next controller adopts or ends them.
        try:
            group = placement_group([dict(b) for b in bundles], strategy=strategy, name=name,
                                    lifetime="detached",
                                    bundle_label_selector=[{NODE_LABEL: i} for i in node_ids])
        except (ValueError, TypeError) as exc:  # e.g. a part with no cores: an empty bundle
            raise LaunchError(f"cannot reserve the gang's nodes: {exc}") from None
        reservation = RayReservation(group)
        ready, _ = ray.wait([group.ready()], timeout=timeout_s)
        if ready:
            return reservation
        reasons = short_nodes(bundles, node_ids, node_names, _free_by_node())
        reservation.remove()
        raise LaunchError(
            f"could not reserve the gang's nodes within {timeout_s:g} s: "
            + (", ".join(reasons) if reasons else ", ".join(node_names)
               + " (each had room; the reservation did not complete)"))

    def find(self, name: str) -> RayReservation | None:
        from ray.util import get_placement_group

        try:
            return RayReservation(get_placement_group(name))
        except ValueError:  # no group of that name
            return None


def _free_by_node() -> dict[str, dict[str, float]]:
    """Free resources of each live Ray node (Ray has no public call for this per node)."""
    import ray

    live = {n["NodeID"]: dict(n.get("Resources", {})) for n in ray.nodes() if n["Alive"]}
    try:
        from ray._private.state import available_resources_per_node

        free = available_resources_per_node()
        return {i: dict(free.get(i, {})) for i in live}
    except Exception:  # noqa: BLE001 - a private call: fall back to totals
        return live


class RayGangAgent:
    """A node agent's actor handle as a ``GangAgent``: each call waits for its answer, and
    an error raised inside the actor comes back as what it was (a LaunchError stays one)."""

    def __init__(self, handle: Any, node: str, node_id: str, address: str,
                 timeout_s: float = 60.0) -> None:
        self.handle, self.node, self.node_id, self.address = handle, node, node_id, address
        self.timeout_s = timeout_s

    def free_port(self) -> int:
        return int(self._get(self.handle.free_port.remote()))

    def launch(self, job: JobRecord, comp: Composition, env: Mapping[str, str]) -> Started:
        started = self._get(self.handle.launch.remote(job, comp, dict(env)))
        if not isinstance(started, Started):
            raise LaunchError(f"the agent on {self.node} answered {type(started).__name__}")
        return started

    def stop(self, job: JobRecord) -> None:
        self._get(self.handle.stop.remote(job))

    def _get(self, ref: Any) -> Any:
        import ray

        return agent_result(lambda: ray.get(ref, timeout=self.timeout_s), self.node)


def agent_result(get: Callable[[], Any], node: str) -> Any:
    """What ``get`` (waiting on an agent's call) returns; a failure is the job's, as a
    ``LaunchError`` naming the node: the agent's own LaunchError as it is, anything the
    agent raised, or an agent that does not answer."""
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    try:
        return get()
    except RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(cause, LaunchError):
            raise cause from None
        raise LaunchError(f"the agent on {node} failed: {cause}") from None
    except (RayActorError, GetTimeoutError) as exc:
        raise LaunchError(f"the agent on {node} is not answering: "
                          f"{type(exc).__name__}") from None


# -- starting a gang --------------------------------------------------------------------

@dataclass
class _Rank:
    rank: int
    node: str
    agent: GangAgent
    started: Started
    ended: Exited | None = None
    stopping: bool = False


class GangLauncher:
    def __init__(self, ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
                 reserver: Reserver | None = None) -> None:
        self.ready_timeout_s = ready_timeout_s
        self.reserver: Reserver = reserver if reserver is not None else RayReserver()

    def start(self, job: JobRecord, comp: Composition,
              agents: Mapping[str, GangAgent]) -> GangHandle:
        """Reserve, then launch every rank; all or nothing (LaunchError, nothing left
        running and nothing reserved)."""
        missing = [n for n in comp.nodes if n not in agents]
        if missing:
            raise LaunchError(f"job {job.id}: no agent on node(s) {', '.join(missing)}")
        team = [agents[n] for n in comp.nodes]
        reservation = self.reserver.reserve(
            group_name(job.id, job.attempt), [bundle_for(p) for p in comp.parts],
            strategy_for(job.spec, comp), [a.node_id for a in team], list(comp.nodes),
            self.ready_timeout_s)
        try:
            ranks = self._launch(job, comp, team)
        except BaseException:
            reservation.remove()
            raise
        return GangHandle(job, ranks, reservation)

    def _launch(self, job: JobRecord, comp: Composition,
                team: Sequence[GangAgent]) -> list[_Rank]:
        master = team[0]
        try:
            port = master.free_port()
        except Exception as exc:  # noqa: BLE001 - any failure is the launch's
            raise LaunchError(f"job {job.id}: no free port on {master.node}: {exc}") from None
        world = len(team)
        envs = [rank_environment(master.address, port, world, r) for r in range(world)]
        # In parallel: the ranks wait for each other in torch.distributed's rendezvous, so
        # starting them one after another would only add each agent's latency to the next.
        with ThreadPoolExecutor(max_workers=world, thread_name_prefix="slicebox-gang") as pool:
            futures = [pool.submit(agent.launch, job, rank_composition(comp, r), envs[r])
                       for r, agent in enumerate(team)]
            outcomes: list[Started | BaseException] = []
            for f in futures:
                try:
                    outcomes.append(f.result())
                except Exception as exc:  # noqa: BLE001 - collected, reported once below
                    outcomes.append(exc)
        errors = [(r, o) for r, o in enumerate(outcomes) if not isinstance(o, Started)]
        if not errors:
            return [_Rank(r, a.node, a, o) for r, (a, o) in enumerate(zip(team, outcomes,
                                                                           strict=True))
                    if isinstance(o, Started)]
        # None may run: the ranks that did start are killed (nothing to checkpoint yet).
        for agent, outcome in zip(team, outcomes, strict=True):
            if isinstance(outcome, Started):
                with contextlib.suppress(Exception):
                    agent.stop(without_grace(job))
        first, error = errors[0]
        more = f" (and {len(errors) - 1} more rank(s))" if len(errors) > 1 else ""
        raise LaunchError(f"job {job.id}: rank {first} on {team[first].node} could not "
                          f"start: {_message(error)}{more}; no rank runs")


def adopt_gang(job: JobRecord, comp: Composition, agents: Mapping[str, GangAgent],
               found: Sequence[Started | None],
               reserver: Reserver | None = None) -> GangHandle | None:
    """After a controller restart: the running gang again, when every rank was adopted
    (``found``, one per part, in rank order); None when any rank is gone (the caller
    then kills the rest: a gang never runs on with a rank missing). Its placement group
    (detached) is found by name and removed when the attempt ends."""
    if len(found) != len(comp.parts) or any(s is None for s in found):
        return None
    if any(n not in agents for n in comp.nodes):
        return None
    reserver = reserver if reserver is not None else RayReserver()
    reservation = reserver.find(group_name(job.id, job.attempt)) or _Nothing()
    ranks = [_Rank(r, n, agents[n], s) for r, (n, s) in enumerate(zip(comp.nodes, found,
                                                                        strict=True))
             if s is not None]
    return GangHandle(job, ranks, reservation)


class _Nothing:
    """No reservation left to remove (it was removed, or never made)."""

    def remove(self) -> None:
        pass


def _message(exc: BaseException) -> str:
    text = str(exc)
    # LaunchError messages begin "cannot start job <id>:"; the gang's already names it.
    return re.sub(r"^cannot start job \S+: ", "", text) or type(exc).__name__


# -- a running gang ---------------------------------------------------------------------

class GangHandle:
    """One running attempt of a gang job; see the module doc for the rules."""

    def __init__(self, job: JobRecord, ranks: Sequence[_Rank],
                 reservation: Reservation) -> None:
        self.job = job
        self._ranks = list(ranks)
        self._by_node = {r.node: r for r in self._ranks}
        self._reservation = reservation
        self._verdict: Exited | None = None
        self._stop_asked = False
        self._reported = False

    @property
    def started(self) -> Started:
        """Rank 0's start: the job's pid, log and progress are rank 0's."""
        return self._ranks[0].started

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(r.node for r in self._ranks)

    @property
    def done(self) -> bool:
        """Its one ``Exited`` has been handed out."""
        return self._reported

    def observe(self, node: str, event: BackendEvent) -> list[BackendEvent]:
        """An event the agent on ``node`` reported for this job -> what the controller
        should hear of it (often nothing)."""
        rank = self._by_node.get(node)
        if rank is None or self._reported:
            return []
        if isinstance(event, Staged | StagingFailed):
            return [event]
        if getattr(event, "attempt", self.job.attempt) != self.job.attempt:
            return []  # an earlier attempt's rank (e.g. adopted late): not this gang's
        if isinstance(event, Progress):
            return [event] if rank.rank == 0 else []
        if isinstance(event, Breached):
            return [event]
        if isinstance(event, Exited):
            if rank.ended is not None:
                return []
            if event.node_lost:
                return self.node_lost(node)
            rank.ended = event
            self._judge(rank, event)
            if self._verdict is not None or self._stop_asked:
                self._stop_others()  # the ranks not yet stopped, or whose stop failed
            return self._finish()
        return []  # Started: the launch already said so

    def node_lost(self, node: str) -> list[BackendEvent]:
        """``node`` left the pool (its Ray node died, or its agent went silent past the
        heartbeat timeout and its processes are fenced off)."""
        rank = self._by_node.get(node)
        if rank is None or rank.ended is not None or self._reported:
            return []
        rank.ended = Exited(self.job.id, self.job.attempt, None,
                            error=f"node {node} was lost under rank {rank.rank}",
                            node_lost=True)
        clean_success = self._verdict is not None and not failed(self._verdict) \
            and self._verdict.node_lost is False and not self._stop_asked
        # A lost node explains the other ranks' failures (their peer vanished), so it wins
        # over them: the job is requeued, not failed. Only a finished job stays finished.
        if not clean_success:
            self._verdict = rank.ended
        self._stop_others()
        return self._finish()

    def stop(self) -> None:
        """The controller's stop (preemption, cancel, time limit): every rank is asked to
        save and stop; the job's exit is rank 0's."""
        self._stop_asked = True
        self._stop_others()

    def _judge(self, rank: _Rank, event: Exited) -> None:
        if self._verdict is not None:
            return
        if rank.rank == 0:
            self._verdict = event
        elif failed(event) and not self._stop_asked:
            why = event.error or (f"exit code {event.exit_code}" if event.exit_code is not None
                                  else "process gone without an exit code")
            self._verdict = replace(event, error=f"rank {rank.rank} on {rank.node}: {why}")

    def _stop_others(self) -> None:
        ranks = [r for r in self._ranks if r.ended is None and not r.stopping]
        if not ranks:
            return
        # In parallel: an agent that does not answer (a frozen node, not yet declared
        # lost) costs the controller's round one call timeout, not one per rank.
        with ThreadPoolExecutor(max_workers=len(ranks),
                                thread_name_prefix="slicebox-gang-stop") as pool:
            calls = [(rank, pool.submit(rank.agent.stop, self.job)) for rank in ranks]
        for rank, call in calls:
            # Asked again at the next event if it failed; a node that is gone is reported
            # through node_lost, which ends its rank.
            rank.stopping = call.exception() is None

    def _finish(self) -> list[BackendEvent]:
        if self._verdict is None or any(r.ended is None for r in self._ranks):
            return []
        self._reported = True
        self._reservation.remove()
        verdict = self._verdict
        return [replace(verdict, job_id=self.job.id, attempt=self.job.attempt)]
