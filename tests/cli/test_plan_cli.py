"""`slicebox plan` and `slicebox submit` as a user runs them (Typer's runner, --json)."""

import json
from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.pool.files import load_pool
from slicebox.pool.model import Link

ROOT = Path(__file__).resolve().parents[2]
DGX = ROOT / "examples/pools/dgx-h100.yaml"
RACK = ROOT / "examples/pools/mixed-rack.yaml"
JOBS = ROOT / "examples/plan-jobs"
runner = CliRunner()


def plan(*args: str) -> dict:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_four_gpu_job_gets_nvlinked_gpus_and_cores_on_their_numa_node() -> None:
    out = plan(str(JOBS / "train-4gpu.yaml"), "--pool", str(DGX))
    (comp,) = out["start"]
    node = load_pool(DGX).node(comp["node"])
    devices = [s["device"] for s in comp["slices"]]
    assert len(devices) == 4
    assert all(node.link(a, b) is Link.NVLINK for a in devices for b in devices if a != b)
    gpu_numa = {node.device(d).numa_node for d in devices}
    assert len(gpu_numa) == 1
    assert {node.numa_of_core(c) for c in comp["cores"]} == gpu_numa
    assert len(comp["cores"]) == 32


def test_half_gpu_job_gets_a_shared_card_with_its_memory_cap() -> None:
    out = plan(str(JOBS / "half-gpu.yaml"), "--pool", str(DGX), "--count", "2")
    slices = [c["slices"][0] for c in out["start"]]
    assert [s["shape"] for s in slices] == ["fraction", "fraction"]
    assert all(s["compute"] == 0.5 and s["memory_gib"] == 20 for s in slices)
    assert slices[0]["device"] == slices[1]["device"]  # two halves share one card


def test_seven_1g_10gb_instances_pack_onto_one_a100() -> None:
    out = plan(str(JOBS / "mig-1g.yaml"), "--pool", str(RACK), "--count", "7")
    cards = {(c["node"], c["slices"][0]["device"]) for c in out["start"]}
    starts = sorted(c["slices"][0]["mig_start"] for c in out["start"])
    assert len(out["start"]) == 7 and len(cards) == 1 and starts == list(range(7))


def test_3g_40gb_instances_use_valid_starts() -> None:
    out = plan(str(JOBS / "mig-3g.yaml"), "--pool", str(RACK), "--count", "4")
    by_card: dict[tuple, list[int]] = {}
    for c in out["start"]:
        s = c["slices"][0]
        assert s["mig_profile"] == "3g.40gb"
        by_card.setdefault((c["node"], s["device"]), []).append(s["mig_start"])
    assert all(sorted(v) == [0, 4] for v in by_card.values())


def test_submit_rejects_nine_gpus_on_an_eight_gpu_pool_and_queues_nothing(
        tmp_path: Path) -> None:
    state = ["--state", str(tmp_path)]
    result = runner.invoke(app, [*state, "submit", str(JOBS / "too-big.yaml"), "--pool",
                                 str(DGX)])
    assert result.exit_code == 2
    assert "resources.gpus" in result.output and "largest node has 8" in result.output
    listed = runner.invoke(app, [*state, "ps", "--all", "--json"])
    assert json.loads(listed.output) == []
