"""Bad trace input: every error names the file, the line and the reason, and
`skip_bad_lines` goes on and counts what it skipped."""

from __future__ import annotations

import pathlib
import pickle
from collections.abc import Callable

import pytest

from slicebox.sim import traces

PHILLY_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"
PHILLY_ROW = "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
POLLUX_HEADER = "name,time,application,num_replicas,batch_size\n"
POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)
POD_ROW = "openb-pod-0001,6000,12288,1,460,,LS,Running,427061,12902960,427061\n"
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"
GAVEL_ROW = (
    "ResNet-50 (batch size 64)\tpython3 main.py -b 64 %s/imagenet/\t"
    "image_classification/imagenet\t--num_minibatches\t1\t2931\t1\t1\t-1.000000\t0\n"
)

Reader = Callable[..., traces.TraceReadResult | traces.NodeReadResult]


def write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_error(
    caught: pytest.ExceptionInfo[traces.TraceError], path: pathlib.Path, line: int, *words: str
) -> None:
    error = caught.value
    assert (error.path, error.line) == (str(path), line)
    assert str(error) == f"{path}:{line}: {error.reason}"
    for word in words:
        assert word in error.reason, f"{word!r} not in {error.reason!r}"


# -- missing column --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "header", "row", "missing"),
    [
        (
            traces.read_philly,
            "timestamp,num_gpus,gpu_time,cluster\n",
            "2017-10-09 07:01:55,1,66.0,x\n",
            "duration",
        ),
        (traces.read_pollux, "name,time,num_replicas,batch_size\n", "a,1,2,64\n", "application"),
        (
            traces.read_alibaba_pods,
            "name,cpu_milli,memory_mib,num_gpu,creation_time\n",
            "p,1,1,1,0\n",
            "gpu_milli",
        ),
        (traces.read_alibaba_nodes, "sn,cpu_milli,memory_mib,model\n", "n,1,1,T4\n", "gpu"),
    ],
)
def test_missing_column_is_named(
    tmp_path, reader: Reader, header: str, row: str, missing: str
) -> None:
    path = write(tmp_path, "trace.csv", header + row)
    for skip in (False, True):  # a missing column cannot be skipped around
        with pytest.raises(traces.TraceError) as caught:
            reader(path, skip_bad_lines=skip)
        assert_error(caught, path, 1, f"missing column '{missing}'", "header has:")


def test_several_missing_columns_are_all_named(tmp_path) -> None:
    path = write(tmp_path, "philly.csv", "timestamp,cluster\n2017-10-09 07:01:55,x\n")
    with pytest.raises(traces.TraceError) as caught:
        traces.read_philly(path)
    assert_error(caught, path, 1, "missing columns 'duration', 'num_gpus'")


# -- negative duration -----------------------------------------------------------------


def test_philly_negative_duration(tmp_path) -> None:
    path = write(
        tmp_path, "philly.csv", PHILLY_HEADER + PHILLY_ROW + "2017-10-09 08:00:00,-5,1,-5,x\n"
    )
    with pytest.raises(traces.TraceError) as caught:
        traces.read_philly(path)
    assert_error(caught, path, 3, "negative duration -5")


def test_alibaba_negative_duration(tmp_path) -> None:
    row = "openb-pod-0002,6000,12288,1,1000,,LS,Running,100,150,200\n"  # deleted before scheduled
    path = write(tmp_path, "openb_pod_list_x.csv", POD_HEADER + POD_ROW + row)
    with pytest.raises(traces.TraceError) as caught:
        traces.read_alibaba_pods(path)
    assert_error(caught, path, 3, "negative duration -50")


# -- garbage lines -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "name", "text", "line", "words"),
    [
        (
            traces.read_philly,
            "philly.csv",
            PHILLY_HEADER + PHILLY_ROW + "2017-10-09 08:00:00,abc,1,1,x\n",
            3,
            ("'duration'", "'abc' is not a number"),
        ),
        (
            traces.read_philly,
            "philly.csv",
            PHILLY_HEADER + "yesterday,5,1,5,x\n",
            2,
            ("'timestamp'", "'yesterday'"),
        ),
        (
            traces.read_philly,
            "philly.csv",
            PHILLY_HEADER + PHILLY_ROW + "garbage\n",
            3,
            ("expected 5 fields, got 1",),
        ),
        (
            traces.read_philly,
            "philly.csv",
            PHILLY_HEADER + "2017-10-09 08:00:00,5,1.5,5,x\n",
            2,
            ("'num_gpus'", "not a whole number"),
        ),
        (
            traces.read_philly,
            "philly.csv",
            PHILLY_HEADER + "2017-10-09 08:00:00,nan,1,5,x\n",
            2,
            ("not a finite number",),
        ),
        (
            traces.read_pollux,
            "philly-workload-9.csv",
            POLLUX_HEADER + "a,1,cifar10,2,64\nb,2,cifar10,two,64\n",
            3,
            ("'num_replicas'", "'two'"),
        ),
        (
            traces.read_pollux,
            "philly-workload-9.csv",
            POLLUX_HEADER + "a,1,cifar10,2,64\na,2,cifar10,2,64\n",
            3,
            ("duplicate name 'a'",),
        ),
        (
            traces.read_gavel,
            "x.trace",
            GAVEL_ROW + "ResNet-50 (batch size 64)\tonly three\tfields\n",
            2,
            ("expected 10 fields, got 3",),
        ),
        (
            traces.read_gavel,
            "x.trace",
            GAVEL_ROW + GAVEL_ROW.replace("\t2931\t", "\tmany\t"),
            2,
            ("'total_steps'", "'many'"),
        ),
        (
            traces.read_alibaba_pods,
            "pods.csv",
            POD_HEADER + POD_ROW.replace(",460,", ",1460,"),
            2,
            ("gpu_milli 1460",),
        ),
        (
            traces.read_alibaba_nodes,
            "nodes.csv",
            NODE_HEADER + "n0,64000,262144,2,P100\nn1,64000,lots,2,P100\n",
            3,
            ("'memory_mib'", "'lots'"),
        ),
        (
            traces.read_alibaba_nodes,
            "nodes.csv",
            NODE_HEADER + "n0,64000,262144,2,\n",
            2,
            ("'model' is empty",),
        ),
    ],
)
def test_garbage_line(
    tmp_path, reader: Reader, name: str, text: str, line: int, words: tuple[str, ...]
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(traces.TraceError) as caught:
        reader(path)
    assert_error(caught, path, line, *words)


def test_binary_garbage_is_reported_not_crashed(tmp_path) -> None:
    path = tmp_path / "philly.csv"
    path.write_bytes(PHILLY_HEADER.encode() + b"\xff\xfe\x00\x81garbage\n")
    with pytest.raises(traces.TraceError) as caught:
        traces.read_philly(path)
    assert "not UTF-8" in caught.value.reason


# -- empty files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "name"),
    [
        (traces.read_philly, "philly.csv"),
        (traces.read_pollux, "philly-workload-9.csv"),
        (traces.read_gavel, "empty.trace"),
        (traces.read_alibaba_pods, "openb_pod_list_x.csv"),
        (traces.read_alibaba_nodes, "openb_node_list_x.csv"),
        (traces.read_trace, "philly.csv"),
    ],
)
def test_empty_file(tmp_path, reader: Reader, name: str) -> None:
    path = write(tmp_path, name, "")
    for skip in (False, True):
        with pytest.raises(traces.TraceError) as caught:
            reader(path, skip_bad_lines=skip)
        assert_error(caught, path, 1, "empty file")


@pytest.mark.parametrize(
    ("reader", "header"),
    [
        (traces.read_philly, PHILLY_HEADER),
        (traces.read_pollux, POLLUX_HEADER),
        (traces.read_alibaba_pods, POD_HEADER),
        (traces.read_alibaba_nodes, NODE_HEADER),
    ],
)
def test_header_without_rows(tmp_path, reader: Reader, header: str) -> None:
    path = write(tmp_path, "only-header.csv", header + "\n")
    with pytest.raises(traces.TraceError) as caught:
        reader(path)
    assert_error(caught, path, 2, "empty file", "header but no rows")


def test_empty_file_by_guess(tmp_path) -> None:
    path = write(tmp_path, "unknown.dat", "")
    with pytest.raises(traces.TraceError) as caught:
        traces.read_trace(path)
    assert_error(caught, path, 1, "empty file")


# -- skip_bad_lines ------------------------------------------------------------------------


def test_skip_bad_lines_counts_and_keeps_the_good(tmp_path) -> None:
    text = (
        PHILLY_HEADER
        + PHILLY_ROW
        + "2017-10-09 08:00:00,-5,1,-5,x\n"  # negative duration
        + "garbage\n"  # wrong field count
        + "\n"  # blank: not a job, not an error
        + "2017-10-09 08:00:00,oops,1,5,x\n"  # unparseable number
        + "2017-10-09 07:02:55,10,2,20,y\n"
    )
    path = write(tmp_path, "philly.csv", text)
    with pytest.raises(traces.TraceError):
        traces.read_philly(path)

    result = traces.read_philly(path, skip_bad_lines=True)
    assert result.skipped == 3
    assert [error.line for error in result.first_errors] == [3, 4, 6]
    assert [job.arrival for job in result.jobs] == [0.0, 60.0]
    # Ids are numbered by data row, so skipping does not renumber the good ones.
    assert [job.id for job in result.jobs] == ["philly-00000", "philly-00005"]


def test_skip_bad_lines_keeps_only_the_first_errors(tmp_path) -> None:
    text = (
        POLLUX_HEADER + "".join(f"j{i},{i},cifar10,x,64\n" for i in range(20)) + "ok,1,bert,1,12\n"
    )
    path = write(tmp_path, "philly-workload-9.csv", text)
    result = traces.read_trace(path, skip_bad_lines=True)
    assert result.skipped == 20
    assert len(result.first_errors) == 5
    assert [job.id for job in result.jobs] == ["ok"]


@pytest.mark.parametrize(
    ("reader", "name", "text", "good"),
    [
        (traces.read_gavel, "x.trace", GAVEL_ROW + "bad line\n" + GAVEL_ROW, 2),
        (
            traces.read_alibaba_pods,
            "pods.csv",
            POD_HEADER + POD_ROW + POD_ROW.replace("0001", "0002").replace("6000", "-1"),
            1,
        ),
        (
            traces.read_alibaba_nodes,
            "nodes.csv",
            NODE_HEADER + "n0,1000,1024,0,\nn0,1000,1024,0,\n",
            1,
        ),
    ],
)
def test_skip_bad_lines_in_every_reader(
    tmp_path, reader: Reader, name: str, text: str, good: int
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(traces.TraceError):
        reader(path)
    result = reader(path, skip_bad_lines=True)
    assert result.skipped == 1
    records = result.jobs if isinstance(result, traces.TraceReadResult) else result.nodes
    assert len(records) == good


def test_trace_error_survives_pickling(tmp_path) -> None:
    error = traces.TraceError(tmp_path / "a.csv", 7, "negative duration -1")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, copy.reason, str(copy)) == (
        error.path,
        error.line,
        error.reason,
        str(error),
    )
