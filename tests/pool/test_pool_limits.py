"""Pool files refuse what no pool can be (issue 8 items 5 and 6), and carry the
environment allow-list that admission reads.

Non-finite sizes, absurd counts and inputs that would make us build without bound are
`PoolFileError`s (an `InputError`) naming the file and the field; hypothesis mutates a
valid pool file and checks that nothing else ever comes out.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from slicebox.errors import InputError
from slicebox.pool import files
from slicebox.pool.files import PoolFileError, load_pool, parse_pool, pool_to_dict
from slicebox.pool.model import Pool
from slicebox.sim import pools
from slicebox.sim.traces import TraceError
from tests.guard import time_limit


def node(**fields: object) -> dict[str, Any]:
    return {"name": "n", "memory_gib": 64, "cores": 8, **fields}


def volume(**fields: object) -> dict[str, Any]:
    return {"name": "v", "path": "/scratch", "tier": "nvme", "capacity_gib": 100,
            "read_mbps": 1000, "write_mbps": 1000, **fields}


def refused(data: object, *words: str) -> PoolFileError:
    with time_limit(20), pytest.raises(PoolFileError) as caught:
        parse_pool(data, "p.yaml")
    assert isinstance(caught.value, InputError)
    message = str(caught.value)
    assert message.startswith("p.yaml: ") and "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return caught.value


@pytest.mark.parametrize(("data", "words"), [
    ({"nodes": [node(memory_gib=float("inf"))]}, ("nodes.0.memory_gib", "finite")),
    ({"nodes": [node(memory_gib=float("nan"))]}, ("nodes.0.memory_gib",)),
    ({"nodes": [node(memory_gib=1e308)]}, ("nodes.0.memory_gib", "less than or equal")),
    ({"nodes": [node(gpus=[{"kind": "L4", "memory_gib": float("inf")}])]},
     ("nodes.0.gpus.0.memory_gib",)),
    ({"nodes": [node(volumes=[volume(capacity_gib=1e308)])]},
     ("nodes.0.volumes.0.capacity_gib",)),
    ({"nodes": [node()], "shared_volumes": [volume(read_mbps=float("inf"))]},
     ("shared_volumes.0.read_mbps",)),
])
def test_non_finite_and_absurd_sizes_are_refused(data: object, words: tuple[str, ...]) -> None:
    refused(data, *words)


@pytest.mark.parametrize(("data", "words"), [
    ({"nodes": [node(replicas=1_000_000)]}, ("nodes.0.replicas",)),
    ({"nodes": [node(gpus=[{"kind": "L4", "count": 1_000_000}])]}, ("nodes.0.gpus.0.count",)),
    ({"nodes": [node(gpus=[{"kind": "L4", "count": 64}] * 3)]}, ("192 GPUs on one node",)),
    # 100,000 nodes of 8 GPUs each pass every per-node check; the totals do not.
    ({"nodes": [node(replicas=100_000, gpus=[{"kind": "L4", "count": 8}])]},
     ("800,000 GPUs", "at most 131,072")),
    ({"nodes": [node(replicas=100_000, cores=65_536)]}, ("cores (replicas counted)",)),
    ({"nodes": [node(cores=10**9)]}, ("a core count must be between 1 and 65537",)),
    ({"nodes": [node(cores={0: [10**12]})]}, ("core ids 0..65536",)),
    ({"nodes": [node(cores={10**9: "0-3"})]}, ("is not an integer in 0..1024",)),
    ({"nodes": [node(gpus=[{"kind": "L4", "count": 2}], nvlink_groups=[[0, 1] * 50_000])]},
     ("nvlink_groups.0: a GPU is listed twice",)),
    ({"nodes": [node()], "env_allow": ["X"] * 1000}, ("env_allow",)),
])
def test_absurd_counts_are_refused(data: object, words: tuple[str, ...]) -> None:
    refused(data, *words)


def test_a_cpulist_that_names_billions_of_cores_is_refused_before_it_is_expanded() -> None:
    # Each range is valid alone; expanding them all would take minutes and gigabytes.
    cpulist = ",".join(["0-65536"] * 500)
    refused({"nodes": [node(cores={0: cpulist})]}, "names more than 65537 cores")
    refused({"nodes": [node(cores={0: "0-31", 1: "32-65540"})]}, "more than 65505 cores")


def test_paths_with_a_nul_are_refused() -> None:
    refused({"nodes": [node(volumes=[volume(path="/data\x00x")])]}, "NUL")


# -- env_allow ---------------------------------------------------------------------------


def test_env_allow_is_read_and_defaults_to_empty() -> None:
    assert parse_pool({"nodes": [node()]}).env_allow == frozenset()
    pool = parse_pool({"nodes": [node()], "env_allow": ["LD_LIBRARY_PATH", "PYTHONPATH"]})
    assert pool.env_allow == frozenset({"LD_LIBRARY_PATH", "PYTHONPATH"})
    assert Pool(pool.nodes).env_allow == frozenset()  # older callers keep working


@pytest.mark.parametrize(("names", "words"), [
    (["LD_PRELOAD", "LD_PRELOAD"], ("env_allow", "'LD_PRELOAD' is listed twice")),
    (["LD_*"], ("env_allow", "not an environment variable name")),
    (["1ABC"], ("not an environment variable name",)),
    (["A=B"], ("not an environment variable name",)),
    ([""], ("not an environment variable name",)),
    (["X" * 200], ("not an environment variable name",)),
    ([7], ("env_allow.0",)),
    ("PATH", ("env_allow",)),
])
def test_bad_env_allow_entries_are_refused(names: object, words: tuple[str, ...]) -> None:
    refused({"nodes": [node()], "env_allow": names}, *words)


def test_env_allow_round_trips_through_a_pool_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("name: lab\nnodes:\n  - {name: box, memory_gib: 64, cores: 8}\n"
                    "env_allow: [PYTHONPATH, LD_LIBRARY_PATH]\n")
    pool = load_pool(path)
    assert pool.env_allow == frozenset({"PYTHONPATH", "LD_LIBRARY_PATH"})
    data = pool_to_dict(pool)
    assert data["env_allow"] == ["LD_LIBRARY_PATH", "PYTHONPATH"]
    assert parse_pool(yaml.safe_load(yaml.safe_dump(data))) == pool
    assert "env_allow" not in pool_to_dict(parse_pool({"nodes": [node()]}))


# -- files and the --pool argument ----------------------------------------------------


def test_a_fifo_or_directory_as_the_pool_file_is_refused(tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "pool.yaml"
    os.mkfifo(fifo)
    with time_limit(20), pytest.raises(PoolFileError, match="not a regular file"):
        load_pool(fifo)
    with pytest.raises(PoolFileError, match="not a regular file"):
        load_pool(tmp_path)


@pytest.mark.parametrize(("spec", "error", "words"), [
    ("philly-7", InputError, "multiple of 8"),
    ("philly-999999992", InputError, "multiple of 8 GPUs in 8..131072"),
    ("philly-" + "8" * 5000, PoolFileError, "too long"),
    ("no-such-preset", InputError, "unknown pool"),
])
def test_bad_pool_names_are_input_errors(spec: str, error: type[Exception], words: str) -> None:
    with time_limit(20), pytest.raises(error, match=words):
        pools.resolve(spec)


def test_a_node_list_with_absurd_values_is_refused_naming_its_line(
        tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n"
                    "n1,64000,inf,2,P100\n")
    with pytest.raises(TraceError) as caught:
        pools.resolve(str(path))
    assert (caught.value.line, caught.value.column) == (3, "memory_mib")
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,NOPE\n")
    with pytest.raises(TraceError, match="unknown GPU model 'NOPE'") as caught:
        pools.resolve(str(path))
    assert (caught.value.line, caught.value.column) == (2, "model")
    # Values a node list allows but a pool does not: the pool's check names the node.
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,65536000,262144,2,P100\n")
    with pytest.raises(PoolFileError, match="nodes.0.cores"):
        pools.alibaba_pool(path, cpu_scale=10)


def test_a_large_written_out_pool_loads_back(tmp_path: pathlib.Path) -> None:
    # 550 nodes of 8 GPUs with their link matrices: about 110,000 YAML values, more than
    # a job spec may have (untrusted.MAX_NODES), well within a pool file's limits.
    pool = parse_pool({"nodes": [node(replicas=550, gpus=[{"kind": "V100", "count": 8}])]})
    path = tmp_path / "big.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the pure-Python one is slow
    path.write_text(yaml.dump(pool_to_dict(pool), Dumper=dumper))
    assert load_pool(path) == pool


def test_a_node_list_longer_than_a_pool_may_be_is_refused_before_building(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pools, "MAX_POOL_NODES", 2)
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\n"
                    + "".join(f"n{i},64000,262144,2,P100\n" for i in range(3)))
    with pytest.raises(PoolFileError, match="3 nodes; a pool may have at most 2"):
        pools.resolve(str(path))


# -- fuzzing -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "name": "fuzz",
    "env_allow": ["PYTHONPATH"],
    "nodes": [
        {"name": "dgx", "replicas": 2, "memory_gib": 1024, "cores": {0: "0-15", 1: [16, 17]},
         "gpus": [{"kind": "A100", "count": 2, "numa": 0, "mig": True},
                  {"kind": "A100", "count": 2, "numa": 1}],
         "links": "pcie", "nvlink_groups": [[0, 1]],
         "mig_instances": [{"gpu": 0, "profile": "3g.20gb", "start": 4}],
         "volumes": [volume()]},
        {"name": "cpu", "memory_gib": 64, "cores": 8},
    ],
    "shared_volumes": [volume(name="home", path="/home", tier="network")],
}
HOSTILE_VALUES = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1.0, 0, 10**6,
                     10**30, -(10**30), True, None, "", "x" * 5000, "0-65536", "\x00",
                     [], {}, [[]], {"a": 1}, "LD_*", ".inf", "1e308"]),
    st.integers(), st.floats(), st.text(max_size=20),
    st.recursive(st.integers(0, 10), lambda inner: st.lists(inner, max_size=3), max_leaves=8),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _with(data: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    copy = dict(data) if isinstance(data, dict) else list(data)
    head, rest = path[0], path[1:]
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _with(copy[head], rest, value, delete)
    return copy


@st.composite
def mutated_pool(draw: st.DrawFn) -> Any:
    data: Any = BASE
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_paths(data)[1:]))  # the root: covered in test_files
        delete = bool(where) and draw(st.booleans()) and draw(st.booleans())
        data = _with(data, where, draw(HOSTILE_VALUES), delete)
    return data


def assert_sane(pool: Pool) -> None:
    """Everything an accepted pool holds is finite and within the documented maxima."""
    assert 0 < len(pool.nodes) <= files.MAX_POOL_NODES
    assert pool.total_gpus <= files.MAX_POOL_GPUS
    assert pool.total_cores <= files.MAX_POOL_CORES
    for n in pool.nodes:
        assert math.isfinite(n.memory_gib) and 0 < n.memory_gib <= files.MAX_MEMORY_GIB
        assert len(n.devices) <= files.MAX_NODE_GPUS
        for device in n.devices:
            assert device.memory_gib is None or math.isfinite(device.memory_gib)
        for v in (*n.volumes, *pool.shared_volumes):
            assert all(math.isfinite(x) and x > 0
                       for x in (v.capacity_gib, v.read_mbps, v.write_mbps))
    assert all(isinstance(name, str) and name for name in pool.env_allow)


@pytest.mark.fuzz
@given(mutated_pool(), st.sampled_from(["yaml", "bytes", "cut"]), st.data())
def test_mutated_pool_files_load_or_fail_naming_the_file(data: Any, form: str,
                                                        extra: st.DataObject) -> None:
    text = yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    if form == "bytes":
        at = extra.draw(st.integers(0, len(text)))
        text = text[:at] + extra.draw(st.binary(min_size=1, max_size=6)) + text[at:]
    elif form == "cut":
        text = text[: extra.draw(st.integers(0, len(text)))]
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "pool.yaml"
        path.write_bytes(text)
        try:
            with time_limit(20):
                pool = load_pool(path)
        except PoolFileError as error:
            message = str(error)
            assert message.startswith(f"{path}: "), message
            assert "\n" not in message
            return
        assert_sane(pool)


def test_the_fuzz_base_is_a_valid_pool() -> None:
    pool = parse_pool(BASE)
    assert len(pool.nodes) == 3 and pool.total_gpus == 8
    assert pool.env_allow == frozenset({"PYTHONPATH"})
