"""Issue 11's must-show, tried as a user would on a 3-node local Ray cluster: the example
jobs run unchanged through `slicebox up --backend ray` (the same files `make demo` runs on
the local backend), spread over the nodes by placement, and the 2-node gloo DDP example
trains to its target with one rank on each of two nodes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]
EXAMPLES = sorted((ROOT / "examples" / "jobs").glob("*.yaml"))
DDP = ROOT / "examples" / "ray" / "ddp-digits.yaml"
TERMINAL = {"succeeded", "failed", "cancelled"}


def cli(state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLICEBOX, "--state", str(state), *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False)


def jobs(state: Path) -> list[dict]:
    done = cli(state, "ps", "--all", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for_cluster_pool(state: Path, up: subprocess.Popen[str], up_log: Path,
                          nodes: int) -> None:
    from slicebox.controller.live_pool import recorded
    from slicebox.pool.model import Pool
    from slicebox.store import Store

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert up.poll() is None, up_log.read_text()
        if (state / "slicebox.db").exists():
            store = Store.open(state)
            try:
                pool = recorded(store)
            finally:
                store.close()
            if isinstance(pool, Pool) and len(pool.nodes) >= nodes:
                return
        time.sleep(1)
    pytest.fail("`slicebox up --backend ray` recorded no pool of the cluster's nodes")


def bench_result(state: Path, job_id: str) -> dict:
    """The workload's own summary line, from the log the controller copied back (rank 0's
    for a gang)."""
    log = cli(state, "logs", job_id, "-n", "200")
    assert log.returncode == 0, log.stderr
    lines = [line for line in log.stdout.splitlines() if '"slicebox.bench.result"' in line]
    assert lines, f"no result line in the log of {job_id}: {log.stdout[-2000:]}"
    return json.loads(lines[-1])


def test_the_examples_and_a_ddp_gang_run_unchanged_on_ray(ray_cluster, tmp_path: Path) -> None:
    clicks = ROOT / "examples" / "data" / "clicks.npz"
    if not clicks.exists():  # what `make demo` generates first
        subprocess.run([sys.executable, "-m", "slicebox.bench.make_clicklog", str(clicks)],
                       check=True, capture_output=True, timeout=300)
    state = tmp_path / "state"
    # As the README says: `up` on the cluster first, then submit (admission checks a job
    # against the nodes `up` recorded; before that, this machine is all it knows).
    up_log = (tmp_path / "up.log").open("w")  # a file: a pipe nobody reads could fill
    up = subprocess.Popen([*SLICEBOX, "--state", str(state), "up", "--backend", "ray",
                           "--address", ray_cluster.address, "--no-mlflow", "--json"],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=up_log, text=True)
    try:
        wait_for_cluster_pool(state, up, tmp_path / "up.log", nodes=3)
        submitted = cli(state, "submit", *map(str, EXAMPLES), str(DDP), "--json")
        assert submitted.returncode == 0, submitted.stderr
        deadline = time.monotonic() + 1200
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = jobs(state)
            if len(rows) == len(EXAMPLES) + 1 and all(r["state"] in TERMINAL for r in rows):
                break
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            time.sleep(3)
        else:
            pytest.fail(f"jobs not done in time: {[(r['name'], r['state']) for r in rows]}")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        up_log.close()
    by_name = {r["name"]: r for r in rows}
    assert {n: r["state"] for n, r in by_name.items()} == dict.fromkeys(by_name, "succeeded"), \
        {n: r.get("reason") for n, r in by_name.items()}
    for row in rows:  # each reached its own quality target, as on the local backend
        result = bench_result(state, row["id"])
        assert result["reached_target"] is True, (row["name"], result)
    # Spread by placement: the jobs ran on more than one of the cluster's nodes.
    nodes_used = {part["node"] for r in rows for part in r["composition"]["parts"]}
    assert len(nodes_used) >= 2, nodes_used
    # The gang: one rank on each of two distinct nodes, one core each.
    ddp = by_name["ddp-digits"]["composition"]["parts"]
    assert len(ddp) == 2 and len({p["node"] for p in ddp}) == 2
    assert [len(p["cores"]) for p in ddp] == [1, 1]
    assert bench_result(state, by_name["ddp-digits"]["id"])["quality"] >= 0.99  # its target
