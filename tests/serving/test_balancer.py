"""The balancer against fake replica processes: routing, retry, health checks, draining."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from slicebox.errors import InputError
from slicebox.serving.balancer import Balancer, Replica
from slicebox.serving.loadramp import Step, drive
from slicebox.serving.replicas import free_port
from tests.serving.conftest import FakeReplicas, wait_until


def test_routes_to_every_healthy_replica_and_forwards_path_and_body(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    balancer.set_replicas([fakes.start("a"), fakes.start("b")])
    wait_until(lambda: balancer.healthy() == {"a", "b"})
    seen = []
    with httpx.Client(base_url=balancer.url) as client:
        for i in range(20):
            response = client.post(f"/predict?i={i}", content=f"body-{i}")
            assert response.status_code == 200
            answer = response.json()
            assert answer["echo"] == f"body-{i}" and answer["path"] == f"/predict?i={i}"
            seen.append(answer["replica"])
    assert set(seen) == {"a", "b"}
    assert balancer.stats().requests == 20


def test_new_replica_gets_traffic_only_after_a_passing_health_check(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    a = fakes.start("a")
    not_yet = Replica("late", "127.0.0.1", free_port())  # nothing listens there yet
    balancer.set_replicas([a, not_yet])
    wait_until(lambda: "a" in balancer.healthy())
    time.sleep(0.5)  # two health intervals: "late" fails its checks
    assert balancer.healthy() == {"a"}
    with httpx.Client(base_url=balancer.url) as client:
        replies = {client.post("/predict").json()["replica"] for _ in range(10)}
    assert replies == {"a"}
    fakes.start("late", port=not_yet.port)
    wait_until(lambda: balancer.healthy() == {"a", "late"})


def test_no_healthy_replica_is_a_503(balancer: Balancer) -> None:
    response = httpx.post(balancer.url + "/predict")
    assert response.status_code == 503
    assert balancer.stats().errors == 1


def test_an_answer_is_never_retried_and_a_5xx_counts_as_an_error(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    balancer.set_replicas([fakes.start("a"), fakes.start("b")])
    wait_until(lambda: balancer.healthy() == {"a", "b"})
    with httpx.Client(base_url=balancer.url) as client:
        assert client.post("/status/500").status_code == 500
        assert client.post("/status/404").status_code == 404
    assert balancer.retries == 0  # the replica answered: it may have acted on the request
    assert balancer.healthy() == {"a", "b"}  # an answer, even a 500, is not a dead replica
    stats = balancer.stats()
    assert (stats.requests, stats.errors) == (2, 1)


def test_failing_health_check_takes_a_replica_out_and_passing_brings_it_back(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    balancer.set_replicas([fakes.start("a"), fakes.start("b")])
    wait_until(lambda: balancer.healthy() == {"a", "b"})
    fakes.sick("b", True)
    wait_until(lambda: balancer.healthy() == {"a"}, timeout_s=3 * 0.2 + 2)
    with httpx.Client(base_url=balancer.url) as client:
        assert {client.post("/x").json()["replica"] for _ in range(10)} == {"a"}
    fakes.sick("b", False)
    wait_until(lambda: balancer.healthy() == {"a", "b"}, timeout_s=3 * 0.2 + 2)


def test_killed_replica_mid_load_fails_no_request_for_longer_than_a_health_interval(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    balancer.set_replicas([fakes.start("a", delay_ms=20), fakes.start("b", delay_ms=20)])
    wait_until(lambda: balancer.healthy() == {"a", "b"})
    killer = threading.Timer(1.5, fakes.kill, args=("b",))
    killer.start()
    report = drive(balancer.url + "/predict", [Step(40.0, 4.0)], seed=1)
    killer.join()
    assert len(report.requests) > 100
    # The must-show bound: no run of failures longer than one health-check interval...
    assert report.longest_error_run_s() <= balancer.health_interval_s
    # ... and in fact none: a request that met the dead replica was retried on "a" (how
    # many did depends on timing: when the kill falls between requests, the next health
    # check takes "b" out before any request meets it, and nothing needs a retry).
    assert report.errors == 0, [r for r in report.requests if not r.ok][:5]
    assert balancer.healthy() == {"a"}  # the kill landed and was noticed
    # Restarted on its port (as the controller restarts a dead replica): back in.
    fakes.start("b", delay_ms=20)
    wait_until(lambda: balancer.healthy() == {"a", "b"})


def test_a_request_that_meets_a_dead_replica_is_retried_on_another(
        fakes: FakeReplicas) -> None:
    # Health checks far apart: the dead replica is still thought healthy when requests
    # meet it, so only the retry keeps them from failing.
    balancer = Balancer(health_interval_s=60.0, window_s=5.0)
    balancer.start()
    try:
        balancer.set_replicas([fakes.start("a"), fakes.start("b")])
        wait_until(lambda: balancer.healthy() == {"a", "b"})
        fakes.kill("b")
        with httpx.Client(base_url=balancer.url) as client:
            answers = [client.post("/predict") for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert {a.json()["replica"] for a in answers} == {"a"}
        assert balancer.retries >= 1
        assert "b" not in balancer.healthy()  # a refused connection takes it out at once
    finally:
        balancer.stop()


def test_removed_replica_drains_its_requests_in_flight(
        balancer: Balancer, fakes: FakeReplicas) -> None:
    slow = fakes.start("slow", delay_ms=800)
    balancer.set_replicas([slow])
    wait_until(lambda: balancer.healthy() == {"slow"})
    answers: list[httpx.Response] = []
    request = threading.Thread(target=lambda: answers.append(
        httpx.post(balancer.url + "/predict", timeout=10)))
    request.start()
    wait_until(lambda: balancer.in_flight().get("slow") == 1)  # the request is at "slow"
    fast = fakes.start("fast")
    balancer.set_replicas([fast])
    assert balancer.draining() == {"slow"}
    assert "slow" not in balancer.healthy()
    assert balancer.wait_drained(["slow"], timeout_s=5)
    request.join()
    assert answers[0].status_code == 200 and answers[0].json()["replica"] == "slow"
    wait_until(lambda: balancer.healthy() == {"fast"})
    assert httpx.post(balancer.url + "/predict").json()["replica"] == "fast"


def test_rejects_bad_settings() -> None:
    with pytest.raises(InputError, match="health_interval_s"):
        Balancer(health_interval_s=0)
    with pytest.raises(InputError, match="health_path"):
        Balancer(health_path="health")
    with pytest.raises(InputError, match="window_s"):
        Balancer(window_s=0)
    b = Balancer()
    with pytest.raises(InputError, match="unique"):
        b.set_replicas([Replica("a", "127.0.0.1", 1), Replica("a", "127.0.0.1", 2)])
