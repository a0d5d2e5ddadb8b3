"""Property-based fuzzing of the trace readers (issue 8 item 6).

Each example takes a valid file of one format, mutates it (hostile values in fields,
lines dropped or repeated, raw bytes spliced in, the file cut short) and reads it the
way `slicebox simulate` does. The only acceptable outcomes: a clean read whose every
value is finite and within `limits`, or a `TraceError` naming the file and a line. Any
other exception, or a read that does not finish, fails the test.
"""

from __future__ import annotations

import pathlib
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicebox.sim import traces
from tests.guard import time_limit

PHILLY = ("timestamp,duration,num_gpus,gpu_time,cluster\n"
          "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
          "2017-10-09 08:00:00,3600,8,28800,6214e9\n"
          "1507532515,10,2,20,11cb48\n")
POLLUX = ("name,time,application,num_replicas,batch_size\n"
          "cifar10-1,0,cifar10,2,256\nbert-2,30,bert,4,12\nimagenet-3,125.5,imagenet,8,1600\n")
GAVEL = ("ResNet-50 (batch size 64)\tpython3 main.py\timagenet\t--num_minibatches\t1\t2931\t1\t1"
         "\t-1.000000\t0\n"
         "Transformer (batch size 128)\tpython3 t.py\tt\t--n\t1\t12000\t4\t2\t3600\t120\n"
         "A3C\tpython3 a.py\ta\t--n\t0\t500\t1\t1\t-1\t7\n")
PODS = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n"
        "openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0\n"
        "openb-pod-0001,6000,12288,1,460,V100M16|V100M32,BE,Running,427061,12902960,427061\n"
        "openb-pod-0002,4000,8192,0,0,,LS,Pending,5000,,\n")
FGD_PODS = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
            "openb-pod-0000,12000,16384,1,1000\nopenb-pod-0001,6000,12288,1,460\n"
            "openb-pod-0002,88000,327680,8,1000\n")
NODES = ("sn,cpu_milli,memory_mib,gpu,model\n"
         "openb-node-0000,64000,262144,2,P100\nopenb-node-0001,32000,262144,0,\n"
         "openb-node-0002,96000,786432,8,V100M32\n")

# (file name, which tells the format; its text; field delimiter)
SAMPLES = (
    ("philly.csv", PHILLY, ","),
    ("philly-workload-1.csv", POLLUX, ","),
    ("fuzz.trace", GAVEL, "\t"),
    ("openb_pod_list_default.csv", PODS, ","),
    ("openb_pod_list_multigpu50.csv", FGD_PODS, ","),
    ("openb_node_list_gpu_node.csv", NODES, ","),
)

HOSTILE = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e309",
           "1e-320", "-0", "-1", "0", "1000000", "4097", "1001", "9" * 400, "1.5", "", " ",
           "abc", "\x00", "\x07", "\u202e", '"', '"open', "0x10", "1_000", "\u0661\u0662",
           "\u221e", "2017-13-45 99:99:99", "9999-12-31 23:59:59", "0001-01-01 00:00:00",
           "2017-10-09T07:01:55+14:00", "a" * 300, "ResNet-50 (batch size 99999999)", "|",
           "V100|", "\t", ",", "\r"]


@st.composite
def mutated_file(draw: st.DrawFn) -> tuple[str, bytes]:
    name, text, delimiter = draw(st.sampled_from(SAMPLES))
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["field", "field", "field", "drop", "repeat", "bytes",
                                     "cut"]))
        row = draw(st.integers(0, len(lines) - 1))
        if kind == "field":
            fields = lines[row].split(delimiter)
            at = draw(st.integers(0, max(0, len(fields) - 1)))
            value = draw(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12),
                                   st.floats().map(repr),
                                   st.integers(-(10**30), 10**30).map(str)))
            fields[at] = value
            lines[row] = delimiter.join(fields)
        elif kind == "drop" and len(lines) > 1:
            del lines[row]
        elif kind == "repeat":
            lines[row:row] = [lines[row]] * draw(st.integers(1, 3))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    last = draw(st.sampled_from(["none", "bytes", "cut"]))
    if last == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif last == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return name, data


def assert_clean_outcome(path: pathlib.Path, format: str | None = None) -> None:
    """A read within `limits`, or a TraceError at a line of this file; nothing else."""
    physical_lines = path.read_bytes().count(b"\n") + 1
    try:
        with time_limit(10):
            result = traces.check_trace_file(path, format)
    except traces.TraceError as error:
        assert error.path == str(path)
        assert 0 <= error.line <= physical_lines + 1, (error.line, physical_lines)
        message = str(error)
        assert message.startswith(f"{path}:{error.line}: " if error.line else f"{path}: ")
        assert "\n" not in message and "\r" not in message, message
        assert len(message) < 1000, message
        return
    records = result.jobs if isinstance(result, traces.TraceReadResult) else result.nodes
    assert len(records) <= physical_lines
    for record in records:
        assert traces.out_of_range(record) is None, (record, traces.out_of_range(record))


@pytest.mark.fuzz
@given(mutated_file())
def test_mutated_traces_read_cleanly_or_fail_naming_file_and_line(
        sample: tuple[str, bytes]) -> None:
    name, data = sample
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / name
        path.write_bytes(data)
        assert_clean_outcome(path)


FORMAT_NAMES = ("philly", "pollux", "gavel", "alibaba", "alibaba-nodes")


@pytest.mark.fuzz
@given(mutated_file(), st.sampled_from(FORMAT_NAMES))
def test_any_file_read_as_any_format_fails_cleanly(sample: tuple[str, bytes],
                                                   format: str) -> None:
    # The user's --format may be wrong for the file: a mismatch is an input error too.
    name, data = sample
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "trace.dat"
        path.write_bytes(data)
        assert_clean_outcome(path, format)


@pytest.mark.fuzz
@given(st.binary(max_size=300), st.sampled_from([name for name, _, _ in SAMPLES]
                                                + ["unknown.dat"]))
def test_random_bytes_fail_cleanly(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / name
        path.write_bytes(data)
        assert_clean_outcome(path)


def test_the_unmutated_samples_are_accepted(tmp_path) -> None:
    # The fuzzing above only means something if its starting points are valid.
    for name, text, _ in SAMPLES:
        path = tmp_path / name
        path.write_text(text)
        result = traces.check_trace_file(path)
        records = result.jobs if isinstance(result, traces.TraceReadResult) else result.nodes
        assert len(records) == 3, name
