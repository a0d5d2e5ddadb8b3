"""simulate(...), bad trace input, reports, and FGD's allocation experiment."""

from __future__ import annotations

import json
import pathlib

import pytest

from slicebox.sim import allocation_curve, report
from slicebox.sim.api import simulate
from slicebox.sim.traces import TraceError
from slicebox.sim.traces.model import TraceJob
from tests.sim.helpers import pool

GAVEL_LINE = ("ResNet-18 (batch size 64)\tpython3 main.py\tdir\t--num_steps\t1\t{steps}\t1\t1"
              "\t-1.000000\t{arrival}\n")


def _gavel_trace(tmp_path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    path = tmp_path / "small.trace"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_simulate_a_gavel_trace_file(tmp_path: pathlib.Path) -> None:
    path = _gavel_trace(tmp_path, [GAVEL_LINE.format(steps=5000, arrival=0),
                                   GAVEL_LINE.format(steps=2000, arrival=100)])
    seen: list[tuple[int, int]] = []
    result = simulate(path, "gavel-48", "slicebox",
                      progress=lambda done, total, t: seen.append((done, total)))
    assert result.metrics.finished == 2
    assert seen[-1] == (2, 2)
    assert result.jobs[0].kind == "V100"  # the fastest kind for it, and free


def test_bad_lines_raise_with_file_and_line_unless_skipped(tmp_path: pathlib.Path) -> None:
    path = _gavel_trace(tmp_path, [GAVEL_LINE.format(steps=5000, arrival=0), "garbage\n"])
    with pytest.raises(TraceError) as error:
        simulate(path, "gavel-48", "fifo")
    assert error.value.line == 2 and str(path) in str(error.value)
    result = simulate(path, "gavel-48", "fifo", skip_bad_lines=True)
    assert result.skipped_lines == 1 and result.metrics.finished == 1


def test_round_seconds_and_periodic_policies() -> None:
    jobs = [TraceJob("a", 0.0, 1, "test", duration=50.0), TraceJob("b", 130.0, 1, "test",
                                                                 duration=50.0)]
    result = simulate(jobs, pool(gpus=2), "fifo", round_seconds=100.0)
    assert result.round_seconds == 100.0
    assert {j.id: j.first_start for j in result.jobs}["b"] == pytest.approx(200.0)
    assert simulate(jobs, pool(gpus=2), "gavel").round_seconds == 360.0


def test_unknown_policy_and_pool_say_what_is_valid() -> None:
    jobs = [TraceJob("a", 0.0, 1, "test", duration=5.0)]
    with pytest.raises(LookupError, match="valid"):
        simulate(jobs, pool(), "no-such-policy")
    with pytest.raises(ValueError, match="sia-64"):
        simulate(jobs, "no-such-pool", "fifo")


def test_report_writes_json_markdown_csv_and_plots(tmp_path: pathlib.Path) -> None:
    jobs = [TraceJob(f"j{i}", float(i), 1, "test", duration=10.0 + i) for i in range(5)]
    result = simulate(jobs, pool(gpus=2), "srtf")
    files = report.write(result, tmp_path / "out")
    data = json.loads(files.summary_json.read_text())
    assert data["policy"] == "srtf" and data["metrics"]["finished"] == 5
    assert "avg JCT" in files.summary_md.read_text()
    assert len(files.jobs_csv.read_text().splitlines()) == 6
    assert all(p.exists() and p.stat().st_size > 0 for p in files.plots)
    table = report.comparison_table([result, simulate(jobs, pool(gpus=2), "fifo")],
                                    reference="srtf")
    assert "**srtf**" in table and "x)" in table


def _pods() -> list[TraceJob]:
    pods = []
    for i in range(30):
        fraction = 0.5 if i % 3 else None
        pods.append(TraceJob(f"p{i}", float(i), 1, "alibaba", gpu_fraction=fraction,
                             cpus=2.0, memory_gib=4.0, duration=1.0))
    return pods


def test_fgd_method_expands_to_130_percent_and_never_frees() -> None:
    the_pool = pool(nodes=4, gpus=4, cores=32)
    curve = allocation_curve.run_curve(_pods(), the_pool, "fgd", seed=1)
    assert curve.arrived[-1] >= 1.3 - 1e-9
    assert all(b >= a for a, b in zip(curve.allocated, curve.allocated[1:], strict=False))
    assert curve.at(1.0) <= 1.0
    again = allocation_curve.run_curve(_pods(), the_pool, "fgd", seed=1)
    assert again.at(1.3) == curve.at(1.3)  # seeded


@pytest.mark.parametrize("policy", ["fifo", "fgd", "slicebox"])
def test_pods_never_leave_so_allocation_never_exceeds_the_pool(policy: str) -> None:
    # 130 % of the pool's GPUs arrive and none leave: whatever the policy (with placement
    # hints or without), what is held can never pass the pool, and some pods must be
    # refused. A round releases held jobs its decision does not name, so the experiment
    # must keep every earlier pod as it is.
    the_pool = pool(nodes=4, gpus=4, cores=32)
    curve = allocation_curve.run_curve(_pods(), the_pool, policy, seed=1)
    assert curve.arrived[-1] >= 1.3 - 1e-9
    assert max(curve.allocated) <= 1.0 + 1e-9
    assert curve.placed < curve.pods


def test_fgd_packs_better_than_the_default_placement_on_shared_gpus() -> None:
    # Halves arrive before whole-GPU pods; spreading halves leaves no whole GPU.
    pods = [TraceJob(f"h{i}", float(i), 1, "alibaba", gpu_fraction=0.5, cpus=1.0,
                     memory_gib=1.0, duration=1.0) for i in range(4)]
    pods += [TraceJob(f"w{i}", 10.0 + i, 1, "alibaba", cpus=1.0, memory_gib=1.0,
                      duration=1.0) for i in range(2)]
    the_pool = pool(nodes=2, gpus=2, cores=8)
    fgd = allocation_curve.run_curve(pods, the_pool, "fgd", seed=0, target=1.0)
    assert fgd.at(1.0) == pytest.approx(1.0)
