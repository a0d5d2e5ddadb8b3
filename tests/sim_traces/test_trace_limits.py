"""The simulator refuses what it cannot simulate, when the trace is read (issue 8).

One test per repro of issue 8's Simulator paragraph (a NaN timestamp and
num_replicas=1,000,000 hung the simulator; huge GPU counts and batch sizes overflowed; a
directory as the trace path gave a traceback; timestamp=inf and duration=1e308 were
accepted), plus the file-level guards (FIFO, device, size, UTF-8) and FGD's short form
of Alibaba pod lists (issue 7 item 5).
"""

from __future__ import annotations

import os
import pathlib

import pytest

from slicebox.errors import InputError
from slicebox.sim import allocation_curve, pools, traces
from slicebox.sim.traces import csvrows, limits

PHILLY_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"
POLLUX_HEADER = "name,time,application,num_replicas,batch_size\n"
POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)
FGD_POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"


def gavel_row(total_steps: str = "2931", scale: str = "1", priority: str = "1",
              slo: str = "-1", arrival: str = "0", job_type: str = "ResNet-50 (batch size 64)"
              ) -> str:
    return (f"{job_type}\tpython3 main.py\timage_classification/imagenet\t--num_minibatches\t"
            f"1\t{total_steps}\t{scale}\t{priority}\t{slo}\t{arrival}\n")


def write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: pathlib.Path, line: int, column: str | None, *words: str,
            format: str | None = None) -> traces.TraceError:
    """Read `path` the way `slicebox simulate` does; it must fail at `line`/`column`."""
    with pytest.raises(traces.TraceError) as caught:
        traces.check_trace_file(path, format)
    error = caught.value
    assert isinstance(error, InputError)
    assert (error.path, error.line, error.column) == (str(path), line, column), str(error)
    assert str(error).startswith(f"{path}:{line}: " if line else f"{path}: ")
    for word in words:
        assert word in error.reason, f"{word!r} not in {error.reason!r}"
    return error


# -- issue 8's repros -------------------------------------------------------------------


def test_nan_timestamp_is_refused(tmp_path) -> None:
    # A NaN arrival once made the simulator's clock loop for ever.
    path = write(tmp_path, "philly.csv", PHILLY_HEADER + "100,5,1,5,a\nnan,5,1,5,a\n")
    refused(path, 3, "timestamp", "'nan' is not a finite number")


def test_infinite_timestamp_is_refused(tmp_path) -> None:
    path = write(tmp_path, "philly.csv", PHILLY_HEADER + "inf,5,1,5,a\n")
    refused(path, 2, "timestamp", "not a finite number")


@pytest.mark.parametrize("column_value", ["1e308", "1e300", str(limits.MAX_SECONDS * 2)])
def test_huge_duration_is_refused(tmp_path, column_value: str) -> None:
    path = write(tmp_path, "philly.csv",
                 PHILLY_HEADER + f"2017-10-09 07:01:55,{column_value},1,5,a\n")
    refused(path, 2, "duration", "above the maximum")


def test_arrivals_spanning_centuries_are_refused(tmp_path) -> None:
    # Each timestamp is valid alone; their span is what no simulation could cover.
    text = PHILLY_HEADER + "2017-10-09 07:01:55,5,1,5,a\n2999-01-01 00:00:00,5,1,5,a\n"
    refused(write(tmp_path, "philly.csv", text), 3, "timestamp", "after the trace's first job")


def test_a_million_replicas_is_refused(tmp_path) -> None:
    path = write(tmp_path, "philly-workload-1.csv",
                 POLLUX_HEADER + "a,0,cifar10,2,64\nb,10,cifar10,1000000,64\n")
    refused(path, 3, "num_replicas", "1000000", "above the maximum 4096")


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        ("philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1000000,5,a\n", 2, "num_gpus"),
        ("philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1e308,5,a\n", 2, "num_gpus"),
        ("philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5," + "9" * 5000 + ",5,a\n", 2,
         "num_gpus"),
        ("x.trace", gavel_row(scale="1000000"), 1, "scale_factor"),
        ("openb_pod_list_x.csv", FGD_POD_HEADER + "p,1000,1024,1000000,1000\n", 2, "num_gpu"),
        ("openb_node_list_x.csv", NODE_HEADER + "n,64000,262144,100000,V100\n", 2, "gpu"),
    ],
)
def test_huge_gpu_counts_are_refused(tmp_path, name: str, text: str, line: int,
                                     column: str) -> None:
    refused(write(tmp_path, name, text), line, column)


@pytest.mark.parametrize("batch", ["100000000000000000000000000", "1e308", "2000000"])
def test_huge_batch_sizes_are_refused(tmp_path, batch: str) -> None:
    path = write(tmp_path, "philly-workload-1.csv", POLLUX_HEADER + f"a,0,cifar10,2,{batch}\n")
    refused(path, 2, "batch_size")


def test_gavel_batch_size_in_the_job_type_is_bounded(tmp_path) -> None:
    path = write(tmp_path, "x.trace", gavel_row(job_type="ResNet-50 (batch size 99999999)"))
    refused(path, 1, "job_type", "batch size 99999999")


@pytest.mark.parametrize(
    ("name", "text", "line", "column"),
    [
        ("x.trace", gavel_row(total_steps="1e308"), 1, "total_steps"),
        ("x.trace", gavel_row(priority="inf"), 1, "priority_weight"),
        ("x.trace", gavel_row(slo="1e300"), 1, "SLO"),
        ("x.trace", gavel_row(arrival="nan"), 1, "arrival_time"),
        ("philly-workload-1.csv", POLLUX_HEADER + "a,1e308,cifar10,2,64\n", 2, "time"),
        ("openb_pod_list_x.csv", POD_HEADER + "p,1000,1024,1,1000,,LS,Running,inf,,\n", 2,
         "creation_time"),
        ("openb_pod_list_x.csv", POD_HEADER + "p,1000,1024,1,1000,,LS,Running,0,1e308,0\n", 2,
         "deletion_time"),
        ("openb_pod_list_x.csv", FGD_POD_HEADER + "p,1e308,1024,1,1000\n", 2, "cpu_milli"),
        ("openb_pod_list_x.csv", FGD_POD_HEADER + "p,1000,-5,1,1000\n", 2, "memory_mib"),
        ("openb_node_list_x.csv", NODE_HEADER + "n,1e300,262144,2,V100\n", 2, "cpu_milli"),
    ],
)
def test_non_finite_and_out_of_range_values_are_refused(
        tmp_path, name: str, text: str, line: int, column: str) -> None:
    refused(write(tmp_path, name, text), line, column)


def test_unknown_gpu_models_are_refused_naming_line_and_column(tmp_path) -> None:
    # Neither a pool nor a placement could use them; FGD's gpuspec variants name real ones.
    pods = write(tmp_path, "openb_pod_list_gpuspec10.csv",
                 POD_HEADER + "p,1000,1024,1,1000,V100M16|V100M32,LS,Running,0,,\n"
                 + "q,1000,1024,1,1000,V100M16|H9000,LS,Running,0,,\n")
    refused(pods, 3, "gpu_spec", "unknown GPU model 'H9000'")
    nodes = write(tmp_path, "openb_node_list_x.csv", NODE_HEADER + "n,64000,262144,2,H9000\n")
    refused(nodes, 2, "model", "unknown GPU model 'H9000'")


@pytest.mark.parametrize("milli", ["1001", "-1", "0"])
def test_gpu_milli_outside_its_range_is_refused(tmp_path, milli: str) -> None:
    path = write(tmp_path, "openb_pod_list_x.csv", FGD_POD_HEADER + f"p,1000,1024,1,{milli}\n")
    refused(path, 2, "gpu_milli")


def test_a_directory_as_the_trace_is_refused(tmp_path) -> None:
    folder = tmp_path / "philly.csv"
    folder.mkdir()
    refused(folder, 0, None, "folder", "not a regular file")
    other = tmp_path / "traces"
    other.mkdir()
    refused(other, 0, None, "not a regular file")  # no format in the name: guessing reads


def test_a_fifo_as_the_trace_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "philly.csv"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    refused(fifo, 0, None, "FIFO")
    refused(fifo, 0, None, "FIFO", format="gavel")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_as_the_trace_is_refused(tmp_path, device: str) -> None:
    link = tmp_path / "philly.csv"
    link.symlink_to(device)
    refused(link, 0, None, "not a regular file")


def test_a_missing_trace_is_an_input_error(tmp_path) -> None:
    refused(tmp_path / "philly.csv", 0, None, "does not exist")


def test_size_is_checked_before_reading(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_TRACE_BYTES", 100)
    path = write(tmp_path, "philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1,5,a\n" * 10)
    refused(path, 0, None, "at most 100 bytes")


def test_row_count_is_bounded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(limits, "MAX_TRACE_ROWS", 3)
    path = write(tmp_path, "philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1,5,a\n" * 4)
    refused(path, 5, None, "more than 3 rows")
    with pytest.raises(traces.TraceError, match="more than 3 rows"):
        traces.read_philly(path, skip_bad_lines=True)  # never skipped


def test_invalid_utf8_names_its_exact_line(tmp_path) -> None:
    path = tmp_path / "philly.csv"
    good = "2017-10-09 07:01:55,5,1,5,a\n"
    path.write_bytes((PHILLY_HEADER + good * 3).encode() + b"2017,\xff\xfe,1,5,a\n")
    refused(path, 5, None, "not UTF-8")


def test_control_characters_and_long_names_are_refused(tmp_path) -> None:
    path = write(tmp_path, "philly-workload-1.csv", POLLUX_HEADER + "a\x07b,0,cifar10,2,64\n")
    refused(path, 2, "name", "control character")
    path = write(tmp_path, "philly-workload-1.csv", POLLUX_HEADER + f"a,0,{'c' * 1000},2,64\n")
    refused(path, 2, "application", "longer than 256")


def test_an_unknown_format_is_an_input_error(tmp_path) -> None:
    path = write(tmp_path, "philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1,5,a\n")
    refused(path, 0, None, "unknown trace format", format="nope")


def test_a_header_from_a_file_that_is_no_trace_is_not_echoed(tmp_path) -> None:
    path = write(tmp_path, "philly.csv", "root:$6$secret:19000:0:99999:7:::\nx\n")
    error = refused(path, 1, "timestamp", "missing columns")
    assert "secret" not in str(error)


def test_the_real_traces_read_cleanly_and_in_range() -> None:
    # Philly (82,247 jobs) is range-checked where its counts are (test_trace_readers).
    for relative in ("pollux-workloads/philly-workload-1.csv",
                     "gavel/max_min_fairness.trace",
                     "alibaba-gpu-2023/openb_pod_list_default.csv",
                     "alibaba-gpu-2023/openb_node_list_all_node.csv"):
        result = traces.check_trace_file(traces.trace_path(relative))
        records = result.jobs if isinstance(result, traces.TraceReadResult) else result.nodes
        assert records, relative
        assert not [r for r in records if traces.out_of_range(r)], relative


def test_out_of_range_catches_what_a_reader_should_have_refused() -> None:
    job = traces.TraceJob(id="j", arrival=0.0, num_gpus=1, workload="philly", duration=5.0)
    assert traces.out_of_range(job) is None
    for change in ({"arrival": float("nan")}, {"duration": 1e308}, {"num_gpus": 10**6},
                   {"batch_size": 10**9}, {"id": "a\nb"}, {"gpu_fraction": 1.5}):
        bad = traces.TraceJob(**{**{"id": "j", "arrival": 0.0, "num_gpus": 1,
                                    "workload": "philly", "duration": 5.0}, **change})
        assert traces.out_of_range(bad) is not None, change


# -- FGD's short pod lists (issue 7 item 5) ---------------------------------------------

FGD_PODS = (FGD_POD_HEADER
            + "openb-pod-0000,12000,16384,1,1000\n"
            + "openb-pod-0001,6000,12288,1,460\n"
            + "openb-pod-0002,88000,327680,8,1000\n"
            + "openb-pod-0003,4000,8192,0,0\n"
            + "openb-pod-0004,8000,30720,2,1000\n")


def test_fgd_short_pod_list_is_read_in_file_order(tmp_path) -> None:
    path = write(tmp_path, "openb_pod_list_multigpu20.csv", FGD_PODS)
    result = traces.read_trace(path)  # format guessed from the name
    jobs = result.jobs
    assert [j.id for j in jobs] == [f"openb-pod-000{i}" for i in range(5)]
    assert [j.arrival for j in jobs] == [0.0] * 5  # no time in the file
    assert [j.num_gpus for j in jobs] == [1, 1, 8, 0, 2]
    assert [j.gpu_fraction for j in jobs] == [None, 0.46, None, None, None]
    assert jobs[0].cpus == 12.0 and jobs[0].memory_gib == 16.0
    assert all(j.duration is None and j.gpu_spec is None and j.group is None for j in jobs)
    # An arbitrary name is recognised by the header as well.
    assert traces.read_trace(write(tmp_path, "variant.csv", FGD_PODS)).jobs == jobs


def test_fgd_short_pod_list_runs_through_the_allocation_curve(tmp_path) -> None:
    pods = traces.read_trace(write(tmp_path, "openb_pod_list_x.csv", FGD_PODS)).jobs
    nodes = write(tmp_path, "openb_node_list_x.csv", NODE_HEADER
                  + "n0,96000,786432,8,V100M32\nn1,96000,786432,8,V100M32\n"
                  + "n2,64000,262144,2,P100\n")
    pool = pools.alibaba_pool(nodes)
    curve = allocation_curve.run_curve(pods, pool, "fgd", seed=0)
    assert curve.pods > len(pods)  # copied until 130 % of the 18 GPUs were requested
    assert 0 < curve.placed < curve.pods
    assert 0.5 < curve.at(1.0) <= 1.0


@pytest.mark.slow
def test_fgd_short_pod_list_runs_through_the_experiment(tmp_path) -> None:
    path = write(tmp_path, "openb_pod_list_x.csv", FGD_PODS)
    result = allocation_curve.experiment("fgd", seeds=1, pods_path=str(path))
    assert 0.9 < result.mean_at(1.0) <= 1.0


def test_shorten_keeps_messages_one_short_line() -> None:
    assert csvrows.shorten("x" * 1000).count("x") == 40
    assert "\n" not in csvrows.shorten("a\nb")
