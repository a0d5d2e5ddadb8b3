"""``GET /metrics``: Prometheus's text format, from ``prometheus_client``.

Computed from the store and the pool at each scrape (nothing to keep in step): jobs by
state and team, how long jobs waited for their first start (a histogram) and how long the
oldest waiting job has waited, each running job's samples/s, and what the pool has
allocated and free: GPUs and slices by kind and shape, cores, memory.

The same visibility as the rest of the API: a team's token sees its team's job series, an
admin token every team's; pool totals (what /v1/pool shows anyone) are in every answer.
Scheduling-round latency is not in the store: the controller beside the service (``up
--serve``) reports each round's duration to a ``RoundLatency``, which every scrape shows.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator

from prometheus_client.core import (
    CollectorRegistry,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from slicebox.pool.model import Pool
from slicebox.service.auth import Caller
from slicebox.snapshot import JobState
from slicebox.store import Store

WAIT_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
# A round costs what changed: milliseconds, up to seconds when thousands of jobs arrive.
ROUND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RoundLatency:
    """The controller's scheduling rounds, timed (a Prometheus histogram): ``observe``
    from the controller's thread, collected by the service's scrapes (thread-safe)."""

    def __init__(self) -> None:
        from prometheus_client import Histogram

        self._histogram = Histogram(
            "slicebox_scheduling_round_seconds", "Seconds one scheduling round of the "
            "controller took (poll, record, decide, place, act)", buckets=ROUND_BUCKETS,
            registry=None)

    def observe(self, seconds: float | None) -> None:
        if seconds is not None and seconds >= 0:
            self._histogram.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        yield from self._histogram.collect()


class StoreCollector:
    """A collector for one scrape by ``caller``."""

    def __init__(self, store: Store, pool: Pool, caller: Caller) -> None:
        self.store, self.pool, self.caller = store, pool, caller

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        sees = self.caller.sees
        by_state = GaugeMetricFamily("slicebox_jobs", "Jobs by state and team",
                                     labels=["state", "team"])
        counts = self.store.count_by_team_and_state()
        teams = {team for team, _ in counts if sees(team)}
        for team in sorted(teams):
            for state in JobState:  # every state, 0 included: a series never vanishes
                by_state.add_metric([state.value, team], counts.get((team, state), 0))
        yield by_state

        jobs = [j for j in self.store.jobs() if sees(j.team)]
        waits: dict[str, list[float]] = defaultdict(list)
        oldest: dict[str, float] = {}
        for job in jobs:
            if job.wait_seconds is not None:
                waits[job.team].append(max(job.wait_seconds, 0.0))
            elif job.state in (JobState.QUEUED, JobState.PREEMPTED):
                oldest[job.team] = max(oldest.get(job.team, 0.0), now - job.submitted_at)
        wait = HistogramMetricFamily("slicebox_job_wait_seconds", "Seconds from submission "
                                     "to a job's first start", labels=["team"])
        for team, values in sorted(waits.items()):
            buckets = [(str(bound), sum(1 for v in values if v <= bound))
                       for bound in WAIT_BUCKETS] + [("+Inf", len(values))]
            wait.add_metric([team], buckets, sum(values))
        yield wait
        waiting = GaugeMetricFamily("slicebox_oldest_waiting_seconds", "How long the "
                                    "oldest waiting job of each team has waited",
                                    labels=["team"])
        for team, seconds in sorted(oldest.items()):
            waiting.add_metric([team], seconds)
        yield waiting

        rate = GaugeMetricFamily("slicebox_job_samples_per_second", "Each running job's "
                                 "last measured throughput", labels=["job_id", "name", "team"])
        for job in jobs:
            if job.state is JobState.RUNNING and job.samples_per_s is not None:
                rate.add_metric([job.id, job.name, job.team], job.samples_per_s)
        yield rate
        yield from self._pool()

    def _pool(self) -> Iterator[Metric]:
        held_slices: Counter[tuple[str, str]] = Counter()
        busy_devices: set[tuple[str, int]] = set()
        cores_held = memory_held = 0.0
        for job in self.store.jobs([JobState.STAGING, JobState.RUNNING]):
            if job.composition is None:
                continue
            for part in job.composition.parts:
                cores_held += len(part.cores)
                memory_held += part.memory_gib
                for s in part.slices:
                    held_slices[(s.kind, str(s.shape))] += 1
                    busy_devices.add((s.node, s.device))
        slices = GaugeMetricFamily("slicebox_slices_allocated", "Slices held by jobs, by "
                                   "device kind and shape (whole, mig, fraction)",
                                   labels=["kind", "shape"])
        for (kind, shape), n in sorted(held_slices.items()):
            slices.add_metric([kind, shape], n)
        yield slices
        total: Counter[str] = Counter()
        free: Counter[str] = Counter()
        for node in self.pool.nodes:
            for device in node.devices:
                total[device.kind_name] += 1
                if (node.name, device.index) not in busy_devices:
                    free[device.kind_name] += 1
        gpus = GaugeMetricFamily("slicebox_gpus", "GPUs in the pool, and those no job holds "
                                 "any slice of", labels=["kind", "use"])
        for kind in sorted(total):
            gpus.add_metric([kind, "total"], total[kind])
            gpus.add_metric([kind, "free"], free[kind])
        yield gpus
        all_cores = sum(len(node.cores) for node in self.pool.nodes)
        cores = GaugeMetricFamily("slicebox_cores", "CPU cores in the pool", labels=["use"])
        cores.add_metric(["total"], all_cores)
        cores.add_metric(["held"], cores_held)
        yield cores
        memory = GaugeMetricFamily("slicebox_memory_gib", "Memory in the pool (GiB)",
                                   labels=["use"])
        memory.add_metric(["total"], sum(node.memory_gib for node in self.pool.nodes))
        memory.add_metric(["held"], memory_held)
        yield memory


def exposition(store: Store, pool: Pool, caller: Caller,
               rounds: RoundLatency | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, pool, caller))
    if rounds is not None:
        registry.register(rounds)
    return generate_latest(registry)
