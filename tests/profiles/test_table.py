from pathlib import Path

import pytest

from slicebox.profiles.table import ProfileEntry, ProfileTable


def table() -> ProfileTable:
    return ProfileTable([
        ProfileEntry("resnet", "A100-80GB", 1, "bf16", 900.0, "bench"),
        ProfileEntry("resnet", "T4", 1, "bf16", 100.0, "bench"),
        ProfileEntry("gpt", "cpu", 2, "fp32", 50.0, "bench"),
    ])


def test_exact_measurement_wins_and_is_marked_measured() -> None:
    est = table().rate("resnet", "a100-80gb", 1, "bf16")
    assert (est.samples_per_s, est.measured) == (900.0, True)


def test_other_size_scales_linearly_and_is_an_estimate() -> None:
    est = table().rate("resnet", "T4", 4, "bf16")
    assert est.samples_per_s == pytest.approx(400.0) and not est.measured


def test_other_kind_scales_by_peak_rate() -> None:
    est = table().rate("gpt", "cpu", 1, "fp32")
    assert est.samples_per_s == pytest.approx(25.0)
    h100 = table().rate("resnet", "H100", 1, "bf16")
    assert not h100.measured and h100.samples_per_s > 900.0  # H100 bf16 peak > A100's


def test_unknown_workload_falls_back_to_peak_estimate() -> None:
    est = table().rate("never-seen", "L4", 1, "fp16")
    assert not est.measured and est.source == "estimated from peak rates"


def test_refine_moves_job_entries_towards_observations_and_leaves_bench_alone() -> None:
    t = table()
    new = t.refine("lm", "cpu", 1, "fp32", 10.0, now=2.0)
    assert new.source == "job" and t.rate("lm", "cpu", 1, "fp32").measured
    moved = t.refine("lm", "cpu", 1, "fp32", 20.0, now=3.0)
    assert 10.0 < moved.samples_per_s < 20.0 and moved.observations == 2
    # A bench number stays comparable with the bench numbers of other sizes.
    kept = t.refine("resnet", "T4", 1, "bf16", 200.0, now=1.0)
    assert kept.samples_per_s == 100.0 and kept.source == "bench"


def test_json_round_trip_and_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    table().to_json(path)
    assert ProfileTable.from_json(path).entries() == table().entries()
    path.write_text('[{"workload": "x", "kind": "Z9", "size": 1, "precision": "fp32",'
                    ' "samples_per_s": 1, "source": "file"}]')
    with pytest.raises(ValueError, match="entry 0"):
        ProfileTable.from_json(path)


@pytest.mark.parametrize("order", [("x", "y"), ("y", "x")])
def test_measured_profiles_steer_placement(order: tuple[str, str]) -> None:
    """X measured 3x faster on H100 than on L4, Y no faster: X gets the H100, Y the L4."""
    from slicebox.placement import dry_run
    from slicebox.pool.files import parse_pool
    from slicebox.snapshot import JobView
    from slicebox.spec import Demand

    profiles = ProfileTable([
        ProfileEntry("x", "H100", 1, "fp32", 300.0, "bench"),
        ProfileEntry("x", "L4", 1, "fp32", 100.0, "bench"),
        ProfileEntry("y", "H100", 1, "fp32", 100.0, "bench"),
        ProfileEntry("y", "L4", 1, "fp32", 100.0, "bench"),
    ])
    pool = parse_pool({"nodes": [
        {"name": "fast", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "H100"}]},
        {"name": "slow", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "L4"}]}]})
    jobs = [JobView(name, Demand(gpus=1, max_gpus=1), submitted_at=i, workload=name)
            for i, name in enumerate(order)]
    placed = {c.job_id: c.kind for c in dry_run(pool, jobs, profiles=profiles).start}
    assert placed == {"x": "H100", "y": "L4"}


def test_bench_results_become_profile_entries() -> None:
    from slicebox.bench.results import BenchResult
    from slicebox.profiles.from_bench import entries_from_bench

    results = [
        BenchResult("image", "cpu-2c", "fp32", "ok", samples_per_s=2000.0, cores=2),
        BenchResult("image", "cpu-1c", "fp16", "not supported here", reason="no fp16"),
        BenchResult("lm", "cpu-1c", "fp32", "ok", samples_per_s=250.0, cores=1,
                    cotenant_cores=1.0),
        BenchResult("lm", "gpu0@0.5", "bf16", "ok", samples_per_s=9000.0, device="cuda:0"),
    ]
    entries = entries_from_bench(results, gpu_kind="H100", now=5.0)
    assert [(e.workload, e.kind, e.size, e.precision, e.samples_per_s) for e in entries] == [
        ("image", "cpu", 2.0, "fp32", 2000.0), ("lm", "H100", 0.5, "bf16", 9000.0)]
    assert entries_from_bench(results[3:], gpu_kind=None) == []
