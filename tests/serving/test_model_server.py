"""The model server: in-process (FastAPI's test client) and as the process a replica runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slicebox.errors import InputError
from slicebox.serving import model_server as ms
from slicebox.serving.replicas import free_port


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from fastapi.testclient import TestClient

    served = ms.load_model(None, train_seconds=1.0, width=4, threads=1)
    with TestClient(ms.create_app(served)) as test_client:
        yield test_client


def test_health_and_empty_body_predicts_one_sample(client) -> None:  # type: ignore[no-untyped-def]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["cores"] == sorted(os.sched_getaffinity(0))
    answer = client.post("/predict").json()
    assert len(answer["predictions"]) == 1 and answer["correct"] in (0, 1)


def test_predicts_a_batch_of_images_and_held_out_samples(client) -> None:  # type: ignore[no-untyped-def]
    images = [[0.0] * 64, [1.0] * 64, [0.5] * 64]
    answer = client.post("/predict", json={"images": images}).json()
    assert len(answer["predictions"]) == 3 and answer["correct"] is None
    assert all(0 <= p <= 9 for p in answer["predictions"])
    held_out = client.post("/predict", json={"count": 200}).json()
    assert len(held_out["predictions"]) == 200
    # Trained for a second, the model is far better than chance (10 %).
    assert held_out["correct"] > 60
    metrics = client.get("/metrics").json()
    assert metrics["samples"] >= 204 and metrics["requests"] >= 3


@pytest.mark.parametrize("body", [
    {"images": [[0.5] * 63]},              # not 8x8
    {"images": [[2.0] * 64]},              # pixel out of range
    {"count": 0},
    {"count": ms.MAX_IMAGES + 1},
    {"images": [[0.5] * 64], "count": 1},  # both
    {"count": 1, "extra": True},
    {"count": "3"},                        # strict: no coercion
])
def test_rejects_bad_bodies(client, body: dict) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/predict", json=body).status_code == 422


def test_port_from_option_or_environment() -> None:
    assert ms.resolve_port(8080, {}) == 8080
    assert ms.resolve_port(None, {ms.PORT_ENV: "9090"}) == 9090
    with pytest.raises(InputError, match=ms.PORT_ENV):
        ms.resolve_port(None, {})
    with pytest.raises(InputError, match=ms.PORT_ENV):
        ms.resolve_port(None, {ms.PORT_ENV: "http"})
    with pytest.raises(InputError, match="65535"):
        ms.resolve_port(70000, {})
    assert ms.parse_cpus("0,2-3") == {0, 2, 3}
    with pytest.raises(InputError, match="--cpus"):
        ms.parse_cpus("a-b")


def test_process_serves_on_the_environment_port_pinned_with_torch_threads_per_core(
        tmp_path: Path) -> None:
    port = free_port()
    weights = tmp_path / "w.pt"
    core = min(os.sched_getaffinity(0))
    env = os.environ | {ms.PORT_ENV: str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "slicebox.serving.model_server", "--cpus", str(core),
         "--weights", str(weights), "--train-seconds", "0.5", "--width", "4"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "model server did not start"
                time.sleep(0.2)
        assert health.json()["cores"] == [core] and health.json()["threads"] == 1
        assert weights.is_file()  # trained once, saved for the next replica
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"count": 4}).json()
        assert len(answer["predictions"]) == 4
    finally:
        process.terminate()
        process.wait(10)


def test_bad_port_environment_exits_2_with_the_field_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slicebox.serving.model_server", "--train-seconds", "0"],
        env=os.environ | {ms.PORT_ENV: "nope"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and ms.PORT_ENV in result.stderr
