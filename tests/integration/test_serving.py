"""The serving must-show, end to end: a service with 1-3 replicas (real processes under the
local backend, each on its own core, behind the real balancer), a load ramp from a client on
127.0.0.1 at a rate that rises then falls, and a training job on the same machine.

Replicas are added as the rate rises and removed as it falls; the p99 stays under the
objective except in the seconds right after a step (counted and printed: 8 s from the step,
or until 3 s after the step's replica count was reached where a loaded machine took longer
to start a replica; the settle times are printed too); no request is
lost to a scale-down; the training job runs throughout, never stopped, on a core no
replica has.

Shapes (chosen for a 2-core machine shared with other work): the pool has 4 cores, one for
the training job and one per replica (cpus: 1, 0.5 GiB). Where this machine has fewer than
4 cores, the pool's cores 0-3 are pinned onto the real ones in turn (``CoreMapped``), so two
jobs may share a physical core; the placement (no two jobs on one pool core) is what is
checked. The replica is a stand-in server with a fixed capacity (one request at a time,
20 ms each: 50 requests/s), told to the autoscaler as 20 requests/s per replica, so the
ramp 5, 30, 55, 25, 5 requests/s needs 1, 2, 3, 2, 1 replicas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller
from slicebox.controller.services import ServiceManager
from slicebox.controller.submit import submit_spec
from slicebox.placement.placer import Placer
from slicebox.pool.composition import Composition
from slicebox.pool.files import parse_pool
from slicebox.serving.loadramp import drive, ramp
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import JobRecord, Store

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REAL_CORES = sorted(os.sched_getaffinity(0))
POOL_CORES = 4
OBJECTIVE_MS = 400.0
RATES = (5.0, 30.0, 55.0, 25.0, 5.0)
REPLICAS = (1, 2, 3, 2, 1)  # what each rate needs at 20 requests/s a replica
STEP_S = 15.0
AFTER_STEP_S = 8.0  # "the seconds right after a step": scaling up takes a few seconds,
DRAIN_S = 3.0  # or, where a replica took longer to start, until 3 s after it served


class CoreMapped(LocalBackend):
    """Pool cores pinned onto this machine's cores in turn (a machine with fewer cores
    than the pool; see the module doc). Everything else is the local backend's."""

    def launch(self, job: JobRecord, comp: Composition, **kwargs):  # type: ignore[override]
        parts = tuple(dataclasses.replace(p, cores=tuple(sorted(
            {REAL_CORES[c % len(REAL_CORES)] for c in p.cores}))) for p in comp.parts)
        return super().launch(job, dataclasses.replace(comp, parts=parts), **kwargs)


def make_pool():
    cores = list(REAL_CORES[:POOL_CORES]) if len(REAL_CORES) >= POOL_CORES \
        else list(range(POOL_CORES))
    return parse_pool({"name": "serving", "nodes": [{
        "name": "local", "memory_gib": 6, "cores": {0: cores}}]}, "serving pool")


def service_spec() -> dict[str, object]:
    return {"name": "digits", "kind": "service",
            "command": [sys.executable, str(HERE / "serving_replica.py"), "20"],
            "resources": {"cpus": 1, "memory_gib": 0.5},
            "service": {"objective": {"p99_ms": OBJECTIVE_MS, "rate_rps": 55.0},
                        "min_replicas": 1, "max_replicas": 3, "replica_capacity_rps": 20.0,
                        "health_interval_s": 0.5}}


def test_replicas_follow_a_load_ramp_beside_a_training_job(tmp_path: Path) -> None:
    the_pool = make_pool()
    store = Store.open(tmp_path / "state")
    backend_type = LocalBackend if len(REAL_CORES) >= POOL_CORES else CoreMapped
    backend = backend_type(tmp_path / "state", node="local")
    controller = Controller(store, the_pool, policies.get("fifo"), Placer(the_pool), backend,
                            tmp_path / "state", interval=0.25)
    controller.services = ServiceManager(store, window_s=3.0, up_after_s=1.5,
                                         down_after_s=4.0)
    placer = Placer(the_pool)
    trainer = submit_spec(store, the_pool, placer, parse_spec({
        "name": "train", "command": [sys.executable, str(HERE / "serving_trainer.py")],
        "resources": {"cpus": 1, "memory_gib": 1.0}}), cwd=tmp_path)
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(service_spec()))
    service_id = submit_spec(store, the_pool, placer, parse_spec(service_spec()),
                             cwd=tmp_path, services=True)

    counts: list[tuple[float, int]] = []  # (monotonic time, replicas serving)

    def on_round(_report: object) -> None:
        balancer = controller.services.balancer(service_id)
        if balancer is not None:
            counts.append((time.monotonic(), len(balancer.healthy())))

    stop = threading.Event()
    loop = threading.Thread(target=controller.run,
                            kwargs={"stop_event": stop, "on_round": on_round}, daemon=True)
    loop.start()
    try:
        wait_for(lambda: counts and counts[-1][1] == 1
                 and store.job(trainer).state is JobState.RUNNING, 60, "first replica")
        url = store.find_service(service_id).url
        assert url is not None and url.startswith("http://127.0.0.1:")
        samples_before = store.job(trainer).samples or 0
        began = time.monotonic()
        report = drive(url + "/predict", ramp(RATES, STEP_S), timeout_s=10.0)
        ended = time.monotonic()
        wait_for(lambda: counts[-1][1] == 1, 30, "back to one replica")

        # Replicas were added as the rate rose and removed as it fell.
        def most(start_s: float, end_s: float) -> int:
            return max(n for t, n in counts if began + start_s <= t < began + end_s)

        def least(start_s: float, end_s: float) -> int:
            return min(n for t, n in counts if began + start_s <= t < began + end_s)

        at = [i * STEP_S for i in range(len(RATES) + 1)]
        assert least(at[0], at[1]) == 1 and most(at[0], at[1]) == 1
        assert most(at[1], at[2]) == 2  # 30/s: two replicas
        assert most(at[2], at[3]) == 3  # 55/s: three
        assert least(at[3], at[4]) == 2  # 25/s: one of them removed
        assert least(at[4], ended - began + 30) == 1  # 5/s: down to one
        # Within the objective except right after a step; counted, and printed.
        # When each step's replica count was reached (a loaded machine can take longer
        # than AFTER_STEP_S to start a replica: until it serves, the step is in transit).
        settled = [next((t - began for t, n in counts
                         if began + at[i] <= t < began + at[i + 1] + 30 and n == want), None)
                   for i, want in enumerate(REPLICAS)]
        near, rest = report.seconds_over_after_step(OBJECTIVE_MS, AFTER_STEP_S, settled,
                                                    DRAIN_S)
        print(f"\nrequests {len(report.requests)}, errors {report.errors}, p99 "
              f"{report.p99_ms():.0f} ms, served within {OBJECTIVE_MS:.0f} ms: "
              f"{report.served_within(OBJECTIVE_MS)}; seconds over the objective: {near} "
              f"within {AFTER_STEP_S:.0f} s after a step, {rest} elsewhere; replica counts "
              f"{compress([n for t, n in counts if began <= t <= ended])}; seconds over: "
              f"{report.seconds_over(OBJECTIVE_MS)}; steps at {at[:-1]} s reached their replica "
              f"counts at {[None if t is None else round(t, 1) for t in settled]} s")
        # A machine shared with other work has hiccups of its own: a few seconds (of 75)
        # away from a step are tolerated, and printed above.
        assert rest <= 4, f"{rest} seconds over the objective away from any step"
        assert report.errors <= max(2, len(report.requests) // 200), report.errors
        stats = store.find_service(service_id).stats
        assert stats["requests"] >= 0 and "p99_ms" in stats

        # The training job ran throughout, on what the replicas left.
        job = store.job(trainer)
        assert job.state is JobState.RUNNING and job.attempt == 1 and job.preemptions == 0
        assert (job.samples or 0) > samples_before
        trainer_cores = set(job.composition.cores if job.composition else ())
        for replica in (j for j in store.jobs() if j.spec.replica_of is not None):
            history = store.composition_history(replica.id)
            for attempt in history:
                assert not trainer_cores & set(attempt.composition.cores), replica.name
        assert len([j for j in store.jobs() if j.spec.replica_of]) >= 3
    finally:
        store.request_service_cancel(service_id)
        with contextlib.suppress(Exception):  # already ended (after a failure above)
            store.request_cancel(trainer)
        try:
            wait_for(lambda: all(j.state.terminal for j in store.jobs())
                     and store.find_service(service_id).ended, 60, "everything stopped")
        finally:
            stop.set()
            loop.join(30)
    assert controller.services.balancer(service_id) is None


def wait_for(done, timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if done():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def compress(values: list[int]) -> str:
    """1,1,1,2,2,3 -> '1x3 2x2 3x1' (the count over time, for the printed report)."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return " ".join(f"{v}x{n}" for v, n in out)


def test_a_killed_replica_is_replaced_and_traffic_moves_on_at_once(tmp_path: Path) -> None:
    """The issue's must-show: a replica's process is killed; it is restarted, and no
    request gets a connection error for longer than the health-check interval."""
    the_pool = make_pool()
    store = Store.open(tmp_path / "state")
    backend_type = LocalBackend if len(REAL_CORES) >= POOL_CORES else CoreMapped
    controller = Controller(store, the_pool, policies.get("fifo"), Placer(the_pool),
                            backend_type(tmp_path / "state", node="local"),
                            tmp_path / "state", interval=0.25)
    controller.services = ServiceManager(store, window_s=3.0)
    spec = service_spec()
    spec["service"] = {**spec["service"], "min_replicas": 2, "max_replicas": 2}  # type: ignore[dict-item]
    service_id = submit_spec(store, the_pool, Placer(the_pool), parse_spec(spec), cwd=tmp_path,
                             services=True)
    interval = 0.5
    stop = threading.Event()
    loop = threading.Thread(target=controller.run, kwargs={"stop_event": stop}, daemon=True)
    loop.start()

    def serving() -> int:
        balancer = controller.services.balancer(service_id)
        return 0 if balancer is None else len(balancer.healthy())

    try:
        wait_for(lambda: serving() == 2, 60, "two replicas")
        url = store.find_service(service_id).url
        assert url is not None
        [first, _] = sorted((j for j in store.jobs([JobState.RUNNING])),
                            key=lambda j: j.name)
        assert first.pid is not None

        def kill_soon() -> None:
            time.sleep(3.0)
            os.kill(first.pid, 9)  # type: ignore[arg-type]  # the launcher: its job dies too

        killer = threading.Thread(target=kill_soon)
        killer.start()
        report = drive(url + "/predict", ramp([20.0], 12.0), timeout_s=10.0)
        killer.join()
        assert store.job(first.id).state is JobState.FAILED
        wait_for(lambda: serving() == 2, 60, "the replacement")
        names = sorted(j.name for j in store.jobs([JobState.RUNNING]) if j.spec.replica_of)
        assert names == ["digits-r2", "digits-r3"]  # r1 replaced by a new replica
        print(f"\nrequests {len(report.requests)}, errors {report.errors}, longest error "
              f"run {report.longest_error_run_s():.2f} s, retried by the balancer "
              f"{getattr(controller.services.balancer(service_id), 'retries', '?')}")
        assert report.longest_error_run_s() <= interval
    finally:
        store.request_service_cancel(service_id)
        try:
            wait_for(lambda: all(j.state.terminal for j in store.jobs())
                     and store.find_service(service_id).ended, 60, "everything stopped")
        finally:
            stop.set()
            loop.join(30)


def test_the_example_service_serves_the_digits_model(tmp_path: Path) -> None:
    """examples/serving/digits-service.yaml as a user would submit it (on a free port
    rather than its 8470): a replica of the reference model server comes up behind the
    balancer and answers predictions; cancelling it stops everything."""
    import httpx

    from slicebox.spec import load_spec

    example = load_spec(HERE.parents[1] / "examples/serving/digits-service.yaml")
    assert example.service is not None
    spec = example.model_copy(update={"service": example.service.model_copy(
        update={"port": 0, "min_replicas": 1, "max_replicas": 1})})
    the_pool = make_pool()
    store = Store.open(tmp_path / "state")
    backend_type = LocalBackend if len(REAL_CORES) >= POOL_CORES else CoreMapped
    controller = Controller(store, the_pool, policies.get("fifo"), Placer(the_pool),
                            backend_type(tmp_path / "state", node="local"),
                            tmp_path / "state", interval=0.25)
    service_id = submit_spec(store, the_pool, Placer(the_pool), spec, cwd=HERE.parents[1],
                             services=True)
    stop = threading.Event()
    loop = threading.Thread(target=controller.run, kwargs={"stop_event": stop}, daemon=True)
    loop.start()
    try:
        wait_for(lambda: (b := controller.services.balancer(service_id)) is not None
                 and len(b.healthy()) == 1, 120, "the model server")
        url = store.find_service(service_id).url
        assert url is not None
        answer = httpx.post(url + "/predict", json={"count": 8}, timeout=30).json()
        assert len(answer["predictions"]) == 8 and 0 <= answer["correct"] <= 8
        [replica] = [j for j in store.jobs([JobState.RUNNING]) if j.spec.replica_of]
        assert replica.name == "digits-r1" and replica.spec.workload == "inference"
    finally:
        store.request_service_cancel(service_id)
        try:
            wait_for(lambda: all(j.state.terminal for j in store.jobs())
                     and store.find_service(service_id).ended, 60, "everything stopped")
        finally:
            stop.set()
            loop.join(30)
