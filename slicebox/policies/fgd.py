"""FGD: fragmentation gradient descent placement for GPU-sharing workloads (ATC'23).

FGD is a placement policy: tasks go in arrival order (as a Kubernetes scheduler takes
pods), and each is put on the node and GPU where the pool's fragmentation for the
target workload grows least (``fragmentation.fgd_choice``). The choice travels to
placement as ``Assignment.node`` / ``devices`` hints. The target workload is, as in FGD,
the mix of tasks the cluster sees: the ``target`` given at construction, or else the
jobs of the snapshot. Non-preemptive; a task that fits nowhere waits.

Needs ``snapshot.nodes`` (the simulator provides them); without them it is FIFO.
"""

from __future__ import annotations

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.fragmentation import NodeTable, TableCache, TargetWorkload, fgd_choice
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView


def target_from(snapshot: ClusterSnapshot) -> TargetWorkload:
    """The task mix of the snapshot's jobs (at 1 % resolution, see ``rounded``)."""
    tasks = [(d.gpu_share, float(d.cpus), d.memory_gib) for d in (j.demand for j in
                                                                  snapshot.jobs)]
    return TargetWorkload.from_tasks(tasks).rounded()


def place_one(table: NodeTable, job: JobView, balance: bool = False) -> Assignment | None:
    """FGD's hint for one waiting job, charged to ``table``; None if it fits nowhere
    (``balance``: see ``fragmentation.fgd_choice``)."""
    demand = job.demand
    gpu = demand.fraction if demand.fraction is not None else float(demand.gpus)
    choice = fgd_choice(table, gpu, float(demand.cpus), demand.memory_gib, demand.kinds,
                        balance)
    if choice is None:
        return None
    node, devices = choice
    table.take(node, devices, gpu if gpu < 1 else 1.0, float(demand.cpus), demand.memory_gib)
    kind = str(table.kinds[node]) or None
    return Assignment(job.id, demand.gpus, kind, node=table.names[node], devices=devices)


@POLICIES.register("fgd", "fragmentation-gradient-descent")
class Fgd(Policy):
    name = "fgd"
    preemptive = False
    reads_progress = False

    def __init__(self, target: TargetWorkload | None = None) -> None:
        self.target = target
        self._tables = TableCache()  # a memo of the node table between decisions

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running, queued = common.split(snapshot.jobs)
        run = [common.keep_or_request(j) for j in running]
        waiting = sorted(queued, key=common.fifo_key)
        if not snapshot.nodes:
            return Decision(tuple(run) + tuple(common.keep_or_request(j) for j in waiting))
        table = self._tables.table(snapshot.nodes, self.target or target_from(snapshot))
        node_gpus = table.free.shape[1] if table.free.ndim == 2 else 0
        for job in waiting:
            if job.demand.gpus > node_gpus:
                run.append(common.keep_or_request(job))  # multi-node: placement decides
                continue
            assignment = place_one(table, job)
            if assignment is not None:
                self._tables.touched.add(table.index[assignment.node or ""])
                run.append(assignment)
        return Decision(tuple(run))
