"""Synergy-Tune: multi-resource allocation by sensitivity (OSDI'22), on a FIFO order.

GPU-proportional CPU shares waste cores on jobs that do not need them and starve the
ones that do (image models that decode and augment on the CPU). Synergy profiles each
job's speed over (cores, memory) and gives it the fewest cores that reach its best
speed when a server has them, giving insensitive jobs fewer than their proportional
share so that sensitive ones can have more. Here: jobs in arrival order; each waiting
job gets its best core count on the node (with room for its GPUs) that has the most
free cores; if no node has that many, the most that node has down to the fewest that
keep it at its requested speed; it waits if not even that fits. Running jobs keep
their allocation (changing cores means a restart). Without sensitivity data (or
per-node free resources in the snapshot) this is plain FIFO with requested shares.
"""

from __future__ import annotations

import numpy as np

from slicebox.policies import common, resources
from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView, NodeView


class NodeRoom:
    """Free whole GPUs, cores and memory per node (numpy arrays: a decision may look
    for a node thousands of times on a pool of thousands of nodes)."""

    def __init__(self, names: list[str], kinds: list[str | None], gpus: np.ndarray,
                 size: np.ndarray, cpus: np.ndarray, memory: np.ndarray) -> None:
        self.names = names
        self.kinds = kinds
        self.kind_array = np.array([k or "" for k in kinds])
        self.gpus = gpus
        self.size = size
        self.cpus = cpus
        self.memory = memory
        self._masks: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def of(cls, snapshot: ClusterSnapshot) -> NodeRoom:
        nodes = snapshot.nodes
        return cls([n.name for n in nodes], [n.kind for n in nodes],
                   np.array([_whole(n) for n in nodes], float),
                   np.array([len(n.free_gpu) for n in nodes], float),
                   np.array([n.free_cpus for n in nodes], float),
                   np.array([n.free_memory_gib for n in nodes], float))

    @property
    def max_cpus(self) -> int:
        """The most free cores of any node, as a whole number (at least 1)."""
        return max(1, int(self.cpus.max(initial=1)))

    def copy(self) -> NodeRoom:
        room = NodeRoom(self.names, self.kinds, self.gpus.copy(), self.size, self.cpus.copy(),
                        self.memory.copy())
        room.kind_array = self.kind_array
        return room

    def best_node(self, job: JobView, gpus: int, cpus: int, memory: float) -> int | None:
        """Node with room for the GPUs, the memory and the most free cores (>= cpus);
        ties to the fewest free GPUs (best fit on GPUs)."""
        ok = (self.gpus >= gpus) & (self.cpus >= cpus) & (self.memory >= memory - 1e-9)
        allowed = job.demand.kinds
        if allowed:
            mask = self._masks.get(allowed)
            if mask is None:
                mask = np.isin(self.kind_array, allowed)
                self._masks[allowed] = mask
            ok &= mask
        if not ok.any():
            return None
        score = np.where(ok, self.cpus * 1024.0 - self.gpus, -np.inf)
        return int(np.argmax(score))

    def take(self, i: int, gpus: int, cpus: int, memory: float) -> None:
        self.gpus[i] -= gpus
        self.cpus[i] -= cpus
        self.memory[i] -= memory


def _whole(node: NodeView) -> int:
    return sum(1 for f in node.free_gpu if f >= 1.0)


class RoomCache:
    """``NodeRoom`` for successive snapshots, rebuilding only the nodes whose (immutable)
    view changed: a decision then costs the nodes that changed, not the pool."""

    def __init__(self) -> None:
        self._views: tuple[NodeView, ...] = ()
        self._room: NodeRoom | None = None

    def room(self, snapshot: ClusterSnapshot) -> NodeRoom:
        views, base = snapshot.nodes, self._room
        if base is None or len(views) != len(self._views) or (
                views and views[0].name != self._views[0].name):
            base = NodeRoom.of(snapshot)
        else:
            for i, (new, old) in enumerate(zip(views, self._views, strict=True)):
                if new is not old:
                    base.gpus[i] = _whole(new)
                    base.cpus[i] = new.free_cpus
                    base.memory[i] = new.free_memory_gib
        self._views, self._room = views, base
        return base.copy()


def tuned_assignment(job: JobView, snapshot: ClusterSnapshot, room: NodeRoom,
                     memo: resources.CoreMemo | None = None) -> Assignment | None:
    """The Synergy-Tune assignment of one waiting single-node job, or None to wait."""
    gpus = job.demand.gpus
    memory = job.demand.memory_gib
    memo = memo or resources.CoreMemo()
    best, fewest, _ = memo.options(job, snapshot.profiles, room.max_cpus)
    node = room.best_node(job, gpus, fewest, memory)
    if node is None:
        return None
    cpus = resources.cores_to_give(best, fewest, room.cpus[node], room.gpus[node] - gpus,
                                   job.demand.cpus / max(gpus, 1))
    room.take(node, gpus, cpus, memory)
    return Assignment(job.id, gpus, room.kinds[node], int(cpus), memory, room.names[node])


@POLICIES.register("synergy", "synergy-tune")
class Synergy(Policy):
    name = "synergy"
    preemptive = False
    reads_progress = False

    def __init__(self) -> None:
        self._rooms = RoomCache()  # memos: node arrays, and each job's core options
        self._cores = resources.CoreMemo()

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running, queued = common.split(snapshot.jobs)
        run = [common.keep_or_request(j) for j in running]
        waiting = sorted(queued, key=common.fifo_key)
        if not snapshot.nodes:
            return Decision(tuple(run) + tuple(common.keep_or_request(j) for j in waiting))
        room = self._rooms.room(snapshot)
        node_size = room.size.max(initial=0)
        for job in waiting:
            if room.gpus.max(initial=0) < 1:
                break  # nothing left to hand out this round
            if job.demand.gpus > node_size or job.demand.fraction is not None \
                    or job.demand.gpus == 0:
                run.append(common.keep_or_request(job))  # placement sizes multi-node jobs
                continue
            assignment = tuned_assignment(job, snapshot, room, self._cores)
            if assignment is not None:
                run.append(assignment)
        return Decision(tuple(run))
