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
FOUR = ROOT / "examples/pools/four-8gpu.yaml"
ONE_GPU = ROOT / "examples/pools/one-gpu-nodes.yaml"
JOBS = ROOT / "examples/plan-jobs"
runner = CliRunner()


def plan(*args: str, exit_code: int = 0) -> dict:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def only_part(comp: dict) -> dict:
    """The one part of a single-node composition in ``plan --json``."""
    (part,) = comp["parts"]
    return part


def test_four_gpu_job_gets_nvlinked_gpus_and_cores_on_their_numa_node() -> None:
    out = plan(str(JOBS / "train-4gpu.yaml"), "--pool", str(DGX))
    (composition,) = out["start"]
    comp = only_part(composition)
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
    slices = [only_part(c)["slices"][0] for c in out["start"]]
    assert [s["shape"] for s in slices] == ["fraction", "fraction"]
    assert all(s["compute"] == 0.5 and s["memory_gib"] == 20 for s in slices)
    assert slices[0]["device"] == slices[1]["device"]  # two halves share one card


def test_seven_1g_10gb_instances_pack_onto_one_a100() -> None:
    out = plan(str(JOBS / "mig-1g.yaml"), "--pool", str(RACK), "--count", "7")
    parts = [only_part(c) for c in out["start"]]
    cards = {(c["node"], c["slices"][0]["device"]) for c in parts}
    starts = sorted(c["slices"][0]["mig_start"] for c in parts)
    assert len(out["start"]) == 7 and len(cards) == 1 and starts == list(range(7))


def test_3g_40gb_instances_use_valid_starts() -> None:
    out = plan(str(JOBS / "mig-3g.yaml"), "--pool", str(RACK), "--count", "4")
    by_card: dict[tuple, list[int]] = {}
    for c in map(only_part, out["start"]):
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
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "resources.gpus: 9 GPUs requested" in said and "the pool has 8" in said
    listed = runner.invoke(app, [*state, "ps", "--all", "--json"])
    assert json.loads(listed.output) == []


def test_sixteen_gpu_job_gets_two_whole_best_connected_nodes() -> None:
    out = plan(str(JOBS / "train-16gpu.yaml"), "--pool", str(FOUR))
    (comp,) = out["start"]
    pool = load_pool(FOUR)
    assert [p["node"] for p in comp["parts"]] == ["nvl-0", "nvl-1"]  # NVLink before PCIe
    for part in comp["parts"]:
        node = pool.node(part["node"])
        assert sorted(s["device"] for s in part["slices"]) == [d.index for d in node.devices]
        # 64 cores and 1024 GiB split in proportion to GPUs: half on each node.
        assert len(part["cores"]) == 32 and part["memory_gib"] == 512
    assert not out["waiting"]


def test_three_gpu_job_spans_three_one_gpu_nodes() -> None:
    out = plan(str(JOBS / "train-3gpu.yaml"), "--pool", str(ONE_GPU))
    (comp,) = out["start"]
    assert [len(p["slices"]) for p in comp["parts"]] == [1, 1, 1]
    assert len({p["node"] for p in comp["parts"]}) == 3
    assert sum(len(p["cores"]) for p in comp["parts"]) == 6


def test_a_job_that_never_fits_names_the_no_fit_reason_and_exits_1() -> None:
    out = plan(str(JOBS / "train-3gpu-one-node.yaml"), "--pool", str(ONE_GPU), exit_code=1)
    assert not out["start"]
    why = out["waiting"]["resnet-3gpu-one-node"]
    assert (why["field"], why["wanted"], why["available"], why["never"]) == ("gpus", 3, 1, True)
    assert "resources.gpus: 3 GPUs requested but the largest node has 1" in why["message"]
    # The table form says the same in one line.
    result = runner.invoke(app, ["plan", str(JOBS / "train-3gpu-one-node.yaml"), "--pool",
                                 str(ONE_GPU)])
    assert result.exit_code == 1  # the plan failed: this pool can never run the job
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "resnet-3gpu-one-node would wait: never fits this pool: resources.gpus" in said


def test_the_table_shows_one_row_per_node_of_a_gang() -> None:
    result = runner.invoke(app, ["plan", str(JOBS / "train-3gpu.yaml"), "--pool",
                                 str(ONE_GPU)])
    assert result.exit_code == 0, result.output
    assert all(f"box-{i}/gpu0" in result.output for i in range(3))
