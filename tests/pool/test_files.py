"""Pool files: the shipped examples, the compact forms, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slicebox.pool import files
from slicebox.pool.discovery import discover_local
from slicebox.pool.files import PoolFileError, load_pool, parse_pool, pool_to_dict
from slicebox.pool.model import Link, Tier
from tests.pool import fake_nvml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pools"


def test_dgx_h100_example() -> None:
    pool = load_pool(EXAMPLES / "dgx-h100.yaml")
    (node,) = pool.nodes
    assert pool.gpu_counts() == {"H100": 8}
    assert [len(c) for _, c in node.cores_by_numa] == [56, 56]
    assert node.memory_gib == 2048
    assert [d.numa_node for d in node.devices] == [0] * 4 + [1] * 4
    assert all(node.link(a, b) is Link.NVLINK for a in range(8) for b in range(8) if a != b)
    assert {v.tier for v in node.volumes} == {Tier.NVME}
    assert [v.tier for v in pool.shared_volumes] == [Tier.NETWORK]
    assert all(v.shared for v in pool.shared_volumes)
    assert len({d.uuid for d in node.devices}) == 8


def test_mixed_rack_example() -> None:
    pool = load_pool(EXAMPLES / "mixed-rack.yaml")
    assert [n.name for n in pool.nodes] == ["a100", "l4", "cpu-0", "cpu-1"]
    a100 = pool.node("a100")
    assert [d.mig_enabled for d in a100.devices] == [True, True, False, False]
    l4 = pool.node("l4")
    assert l4.link(0, 1) is Link.PIX and l4.link(1, 2) is Link.SYS
    assert not pool.node("cpu-1").devices
    assert pool.shared_volumes[0].tier is Tier.NETWORK


@pytest.mark.parametrize("name", ["dgx-h100.yaml", "mixed-rack.yaml"])
def test_round_trip(name: str) -> None:
    pool = load_pool(EXAMPLES / name)
    assert parse_pool(pool_to_dict(pool)) == pool


def test_round_trip_of_a_discovered_pool_with_mig() -> None:
    pool = discover_local(nvml=fake_nvml.a100_mig(), node_name="box", measure=False)
    again = parse_pool(yaml.safe_load(yaml.safe_dump(pool_to_dict(pool))))
    assert again.nodes[0].devices == pool.nodes[0].devices
    assert again.nodes[0].links == pool.nodes[0].links


def _node(**fields: object) -> dict[str, object]:
    return {"nodes": [{"name": "n", "memory_gib": 64, "cores": 8, **fields}]}


@pytest.mark.parametrize(("data", "message"), [
    ({"nodes": [{"name": "n", "memroy_gib": 1, "cores": 4}]},
     "nodes.0.memroy_gib: unknown field"),
    (_node(gpus=[{"kind": "H101"}]), "nodes.0.gpus.0.kind: unknown device kind 'H101'"),
    (_node(gpus=[{"kind": "L4", "count": -2}]), "nodes.0.gpus.0.count"),
    (_node(gpus=[{"kind": "cpu"}]), "not a GPU kind"),
    (_node(gpus=[{"kind": "L4", "mig": True}]), "L4 cards have no MIG mode"),
    (_node(cores={0: "0-3", 1: "3-5"}), "nodes.0.cores: NUMA node 1: core 3 is listed twice"),
    (_node(cores="many"), "nodes.0.cores: give a core count"),
    (_node(gpus=[{"kind": "L4", "numa": 1}]), "gpus.0.numa: NUMA node 1 has no cores"),
    (_node(gpus=[{"kind": "L4", "count": 2}], links="nvl"), "nodes.0.links: 'nvl' is not"),
    (_node(gpus=[{"kind": "L4", "count": 2}], links=[["X", "NV"], ["PIX", "X"]]),
     "links.0.1: NV but links.1.0: PIX"),
    (_node(gpus=[{"kind": "L4", "count": 2}], nvlink_groups=[[0, 2]]),
     "nvlink_groups.0: GPU 2 does not exist"),
    (_node(gpus=[{"kind": "A100", "mig": True}],
           mig_instances=[{"gpu": 0, "profile": "3g.20gb", "start": 2}]),
     "mig_instances.0.start: 3g.20gb may start at [0, 4], not 2"),
    (_node(gpus=[{"kind": "A100", "mig": True}],
           mig_instances=[{"gpu": 0, "profile": "3g.40gb", "start": 0}]),
     "mig_instances.0.profile: MIG profile '3g.40gb' does not exist on A100-40GB"),
    (_node(gpus=[{"kind": "A100"}], mig_instances=[{"gpu": 0, "profile": "1g.5gb", "start": 0}]),
     "mig_instances.0.gpu: GPU 0 does not have mig: true"),
    (_node(volumes=[{"name": "v", "path": "data", "tier": "ssd", "capacity_gib": 1,
                     "read_mbps": 1, "write_mbps": 1}]),
     "nodes.0.volumes.0.path: must be an absolute path"),
    (_node(volumes=[{"name": "v", "path": "/d", "tier": "floppy", "capacity_gib": 1,
                     "read_mbps": 1, "write_mbps": 1}]), "nodes.0.volumes.0.tier"),
    ({"nodes": []}, "nodes: a pool needs at least one node"),
    ({"nodes": [{"name": "a", "memory_gib": 1, "cores": 1},
                {"name": "a", "memory_gib": 1, "cores": 1}]}, "nodes.1.name: node 'a' is defined"),
    (["not", "a", "mapping"], "expected a mapping"),
])
def test_bad_pool_files_name_the_field(data: object, message: str) -> None:
    with pytest.raises(PoolFileError) as raised:
        parse_pool(data)
    assert message in str(raised.value)


def test_compact_forms() -> None:
    pool = parse_pool({"name": "p", "nodes": [{
        "name": "box", "replicas": 3, "memory_gib": 256, "cores": {0: "0-7", 1: [8, 9, 10, 11]},
        "gpus": [{"kind": "V100", "count": 2, "numa": 0}, {"kind": "V100", "count": 2, "numa": 1}],
        "links": "pcie", "nvlink_groups": [[0, 1], [2, 3]]}]})
    assert [n.name for n in pool.nodes] == ["box-0", "box-1", "box-2"]
    node = pool.nodes[0]
    assert node.cores_by_numa == ((0, tuple(range(8))), (1, (8, 9, 10, 11)))
    assert node.link(0, 1) is Link.NVLINK and node.link(2, 3) is Link.NVLINK
    assert node.link(1, 2) is Link.SYS
    assert pool.nodes[0].devices[0].uuid != pool.nodes[1].devices[0].uuid


def test_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PoolFileError, match="cannot read"):
        load_pool(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [unclosed\n")
    with pytest.raises(PoolFileError, match="not valid YAML"):
        load_pool(bad)
    monkeypatch.setattr(files, "MAX_POOL_BYTES", 100)
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 200 + "\n")
    with pytest.raises(PoolFileError, match="at most 100 bytes"):
        load_pool(big)
