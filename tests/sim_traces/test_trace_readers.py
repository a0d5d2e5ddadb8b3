"""Each reader on the real copied data: counts match data/traces/README.md."""

from __future__ import annotations

import collections
import datetime

import pytest

from slicebox.sim import traces


def test_philly_counts_gpu_sizes_and_arrivals() -> None:
    path = traces.trace_path("philly/philly.csv")
    result = traces.read_philly(path)

    jobs = result.jobs
    assert len(jobs) == 82_247
    assert result.skipped == 0
    sizes = collections.Counter(job.num_gpus for job in jobs)
    assert sizes[1] == 76_627
    assert sizes[2] == 1_818
    assert sizes[4] == 1_870
    assert sizes[8] == 1_643
    assert sizes[16] == 199
    assert sizes[32] == 67
    assert max(sizes) == 128
    # Arrival counts from the earliest submission (2017-09-04 10:30:41) and the jobs
    # come back in arrival order, though the file is not.
    assert jobs[0].arrival == 0.0
    assert all(a.arrival <= b.arrival for a, b in zip(jobs, jobs[1:], strict=False))
    span = datetime.datetime(2017, 12, 22, 8, 2, 11) - datetime.datetime(2017, 9, 4, 10, 30, 41)
    assert jobs[-1].arrival == span.total_seconds()
    assert all(job.duration is not None and job.duration > 0 for job in jobs)
    assert {job.workload for job in jobs} == {"philly"}
    assert len({job.group for job in jobs}) == 15  # virtual clusters
    assert not [job for job in jobs if traces.out_of_range(job)]  # within the limits
    assert len({job.id for job in jobs}) == len(jobs)
    # The file's first data row (2017-10-09 07:01:55, 66 s, 1 GPU, cluster 11cb48).
    first_row = next(job for job in jobs if job.id == "philly-00000")
    assert (first_row.duration, first_row.num_gpus, first_row.group) == (66.0, 1, "11cb48")


@pytest.mark.parametrize("number", range(1, 9))
def test_pollux_workloads(number: int) -> None:
    result = traces.read_pollux(traces.trace_path(f"pollux-workloads/philly-workload-{number}.csv"))
    assert len(result.jobs) == 160
    apps = {job.workload for job in result.jobs}
    assert apps <= {"cifar10", "imagenet", "bert", "deepspeech2", "ncf", "yolov3"}
    assert all(job.batch_size and job.num_gpus >= 1 for job in result.jobs)
    assert all(job.duration is None and job.total_work is None for job in result.jobs)


def test_pollux_first_job_fields() -> None:
    jobs = traces.read_pollux(traces.trace_path("pollux-workloads/philly-workload-1.csv")).jobs
    first = jobs[0]  # cifar10-0,107,cifar10,6,2048
    assert (first.id, first.arrival, first.workload, first.num_gpus, first.batch_size) == (
        "cifar10-0",
        107.0,
        "cifar10",
        6,
        2048,
    )


TRACE_LINES = {
    "artifact_evaluation.trace": 15,
    "debug.trace": 14,
    "debug_v2.trace": 14,
    "highmem_test.trace": 8,
    "max_min_fairness.trace": 96,
    "medium_test.trace": 20,
    "minimize_makespan.trace": 100,
    "small_test.trace": 20,
}


@pytest.mark.parametrize(("name", "count"), sorted(TRACE_LINES.items()))
def test_gavel_traces(name: str, count: int) -> None:
    result = traces.read_gavel(traces.trace_path(f"gavel/{name}"))
    assert len(result.jobs) == count
    assert all(job.total_work and job.total_work > 0 for job in result.jobs)


def test_gavel_fields_of_first_line() -> None:
    # ResNet-50 (batch size 64) ... total_steps 2931, scale 1, priority 1, SLO -1, arrival 0
    first = traces.read_gavel(traces.trace_path("gavel/artifact_evaluation.trace")).jobs[0]
    assert first.workload == "ResNet-50 (batch size 64)"
    assert (first.total_work, first.num_gpus, first.priority_weight) == (2931.0, 1, 1.0)
    assert (first.batch_size, first.slo, first.arrival) == (64, None, 0.0)


def test_gavel_job_type_without_batch_size() -> None:
    jobs = traces.read_gavel(traces.trace_path("gavel/artifact_evaluation.trace")).jobs
    a3c = next(job for job in jobs if job.workload == "A3C")
    assert (a3c.batch_size, a3c.total_work) == (None, 8857.0)


def test_alibaba_default_pods() -> None:
    path = traces.trace_path("alibaba-gpu-2023/openb_pod_list_default.csv")
    jobs = traces.read_alibaba_pods(path).jobs
    assert len(jobs) == 8_152
    fractional = [job for job in jobs if job.gpu_fraction is not None]
    assert len(fractional) == 3_078
    assert all(job.num_gpus == 1 and 0 < job.gpu_fraction < 1 for job in fractional)
    # openb-pod-0001: 6000 milli-CPU, 12288 MiB, 1 GPU at 460 milli, LS, 427061..12902960
    pod = next(job for job in jobs if job.id == "openb-pod-0001")
    assert (pod.cpus, pod.memory_gib, pod.gpu_fraction, pod.group) == (6.0, 12.0, 0.46, "LS")
    assert (pod.arrival, pod.duration) == (427_061.0, 12_902_960.0 - 427_061.0)
    pending = [job for job in jobs if job.duration is None]
    assert len(pending) == 897  # never scheduled: no run time
    assert sum(job.num_gpus == 0 for job in jobs) == 1_088  # CPU-only pods


@pytest.mark.parametrize(("name", "fractional"), [("gpushare40", 4_001), ("gpushare100", 7_064)])
def test_alibaba_sharing_variants(name: str, fractional: int) -> None:
    path = traces.trace_path(f"alibaba-gpu-2023/openb_pod_list_{name}.csv")
    jobs = traces.read_alibaba_pods(path).jobs
    assert len(jobs) == 8_152
    assert sum(job.gpu_fraction is not None for job in jobs) == fractional


def test_alibaba_node_lists() -> None:
    gpu_nodes = traces.read_alibaba_nodes(
        traces.trace_path("alibaba-gpu-2023/openb_node_list_gpu_node.csv")
    ).nodes
    assert len(gpu_nodes) == 1_213
    assert sum(node.gpus for node in gpu_nodes) == 6_212
    assert gpu_nodes[0] == traces.TraceNode("openb-node-0000", 64.0, 256.0, 2, "P100")

    all_nodes = traces.read_alibaba_nodes(
        traces.trace_path("alibaba-gpu-2023/openb_node_list_all_node.csv")
    ).nodes
    assert len(all_nodes) == 1_523
    assert sum(node.gpus for node in all_nodes) == 6_212
    assert sum(node.gpu_model is None for node in all_nodes) == 310
    models = {node.gpu_model for node in all_nodes} - {None}
    assert models == {"G2", "T4", "G3", "P100", "V100M32", "V100M16", "A10"}


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("philly/philly.csv", "philly"),
        ("pollux-workloads/philly-workload-3.csv", "pollux"),
        ("gavel/small_test.trace", "gavel"),
        ("alibaba-gpu-2023/openb_pod_list_default.csv", "alibaba"),
    ],
)
def test_format_guessed_from_name(relative: str, expected: str) -> None:
    assert traces.guess_format(traces.trace_path(relative)) == expected


@pytest.mark.parametrize(
    ("source", "expected", "count"),
    [
        ("pollux-workloads/philly-workload-3.csv", "pollux", 160),
        ("gavel/small_test.trace", "gavel", 20),
        ("alibaba-gpu-2023/openb_pod_list_default.csv", "alibaba", 8_152),
    ],
)
def test_format_guessed_from_header(tmp_path, source: str, expected: str, count: int) -> None:
    renamed = tmp_path / "renamed.txt"  # nothing in the name to go by
    renamed.write_bytes(traces.trace_path(source).read_bytes())
    assert traces.guess_format(renamed) == expected
    assert len(traces.read_trace(renamed).jobs) == count


def test_read_trace_with_format_and_alias(tmp_path) -> None:
    source = traces.trace_path("pollux-workloads/philly-workload-2.csv")
    assert len(traces.read_trace(source, format="sia").jobs) == 160
    assert len(traces.read_trace(source, format="POLLUX").jobs) == 160


def test_unknown_format_lists_the_valid_ones() -> None:
    source = traces.trace_path("pollux-workloads/philly-workload-2.csv")
    with pytest.raises(ValueError, match="unknown trace format 'borg'") as caught:
        traces.read_trace(source, format="borg")
    for name in ("alibaba", "gavel", "philly", "pollux"):
        assert name in str(caught.value)


def test_unguessable_file_names_the_formats(tmp_path) -> None:
    odd = tmp_path / "jobs.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(traces.TraceError, match="cannot tell the trace format") as caught:
        traces.read_trace(odd)
    assert caught.value.line == 1
    assert "philly" in str(caught.value) and "gavel" in str(caught.value)


def test_node_list_is_not_a_job_trace() -> None:
    with pytest.raises(traces.TraceError, match="node list"):
        traces.read_trace(traces.trace_path("alibaba-gpu-2023/openb_node_list_gpu_node.csv"))


def test_synthetic_poisson_arrivals_from_a_trace() -> None:
    template = traces.read_pollux(traces.trace_path("pollux-workloads/philly-workload-1.csv")).jobs
    jobs = traces.synthesize(template, rate=0.5, num_jobs=4_000, seed=7)
    again = traces.synthesize(template, rate=0.5, num_jobs=4_000, seed=7)
    other = traces.synthesize(template, rate=0.5, num_jobs=4_000, seed=8)
    assert jobs == again
    assert jobs != other
    assert len(jobs) == 4_000 and len({job.id for job in jobs}) == 4_000
    gaps = [b.arrival - a.arrival for a, b in zip(jobs, jobs[1:], strict=False)]
    assert all(gap >= 0 for gap in gaps)
    mean_gap = sum(gaps) / len(gaps)
    assert mean_gap == pytest.approx(2.0, rel=0.08)  # 1 / rate; 4k draws: ~1.6 % s.e.
    # The mix comes from the template: every drawn job is a template job but for id/arrival.
    by_shape = {(j.workload, j.num_gpus, j.batch_size) for j in template}
    assert all((j.workload, j.num_gpus, j.batch_size) in by_shape for j in jobs)
    assert {j.workload for j in jobs} == {j.workload for j in template}


def test_synthetic_rejects_bad_arguments() -> None:
    job = traces.TraceJob(id="a", arrival=0.0, num_gpus=1, workload="philly", duration=1.0)
    with pytest.raises(ValueError, match="rate"):
        traces.synthesize([job], rate=0.0, num_jobs=1, seed=0)
    with pytest.raises(ValueError, match="no jobs"):
        traces.synthesize([], rate=1.0, num_jobs=1, seed=0)
