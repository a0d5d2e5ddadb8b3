"""Discovery: NVIDIA GPUs through a fake NVML, and this machine's cores, memory and volumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slicebox.placement import PoolState
from slicebox.pool import volumes as volumes_module
from slicebox.pool.discovery import discover_cores, discover_local
from slicebox.pool.gpus import discover_gpus
from slicebox.pool.model import Link, Tier
from slicebox.pool.volumes import discover_volumes, guess_tier
from tests.pool import fake_nvml


def test_dgx_h100_all_nvlink_through_switches(tmp_path: Path) -> None:
    nvml = fake_nvml.dgx_h100()
    inventory = discover_gpus(nvml, tmp_path, numa_nodes={0, 1})
    devices = inventory.devices
    assert [d.kind_name for d in devices] == ["H100"] * 8
    assert [d.uuid for d in devices] == [c.uuid for c in nvml.cards]
    assert [d.numa_node for d in devices] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert not any(d.mig_enabled for d in devices)
    for i in range(8):
        for j in range(8):
            assert inventory.links[i][j] is (Link.SELF if i == j else Link.NVLINK)
    assert nvml.initialised == 0  # nvmlShutdown was called


def test_a100_mig_instances_and_direct_nvlink(tmp_path: Path) -> None:
    nvml = fake_nvml.a100_mig()
    inventory = discover_gpus(nvml, tmp_path, numa_nodes={0})
    card0, card1 = inventory.devices
    assert card0.kind_name == card1.kind_name == "A100-80GB"
    assert card0.mig_enabled and card1.mig_enabled
    # Two compute instances of one GPU instance are one instance; starts come from NVML.
    assert [(m.profile, m.start) for m in card0.mig_instances] == [
        ("2g.20gb", 0), ("1g.10gb", 2), ("3g.40gb", 4)]
    assert [m.uuid for m in card0.mig_instances] == [
        nvml.cards[0].migs[1].uuid, nvml.cards[0].migs[3].uuid, nvml.cards[0].migs[0].uuid]
    assert [(m.profile, m.start) for m in card1.mig_instances] == [("4g.40gb", 0)]
    # P2P queries are unsupported here: NVLink is found from the links' far ends.
    assert inventory.links[0][1] is Link.NVLINK


def test_l4_pair_on_pcie_with_numa_from_sysfs(tmp_path: Path) -> None:
    for i, bus in enumerate(("41", "42")):
        folder = tmp_path / "bus" / "pci" / "devices" / f"0000:{bus.lower()}:00.0"
        folder.mkdir(parents=True)
        (folder / "numa_node").write_text(f"{i}\n")
    inventory = discover_gpus(fake_nvml.l4_pair(), tmp_path, numa_nodes={0, 1})
    assert [d.kind_name for d in inventory.devices] == ["L4", "L4"]
    assert [d.numa_node for d in inventory.devices] == [0, 1]
    assert inventory.links[0][1] is Link.PIX
    # Without sysfs and with NVML not knowing, the NUMA node is unknown, not made up.
    bare = discover_gpus(fake_nvml.l4_pair(), tmp_path / "nothing", numa_nodes={0, 1})
    assert [d.numa_node for d in bare.devices] == [None, None]


def test_no_nvml_library_means_no_gpus_not_an_error() -> None:
    pool = discover_local(nvml=fake_nvml.FakeNvml([], library=False), measure=False)
    assert pool.total_gpus == 0
    # The real binding on this GPU-less machine: nvmlInit fails, discovery goes on.
    assert discover_local(measure=False).total_gpus == 0


def test_discovered_gpus_feed_placement() -> None:
    pool = discover_local(nvml=fake_nvml.a100_mig(), node_name="box", measure=False)
    node = pool.node("box")
    assert len(node.devices) == 2 and node.link(0, 1) is Link.NVLINK
    state = PoolState(pool)
    assert state.capacity().free_gpus["A100-80GB"] == 2
    # 2g@0-1, 1g@2, 3g@4-7 leave slice 3 free on card 0; card 1 has 4-7 free.
    assert list(state.mig_cards("A100-80GB", 4)) == [1]


def test_local_machine_cores_memory_volumes() -> None:
    pool = discover_local(measure=False)
    (node,) = pool.nodes
    assert not node.devices
    assert sorted(node.cores) == sorted(os.sched_getaffinity(0))
    numa_ids = [numa for numa, _ in node.cores_by_numa]
    assert numa_ids == sorted(set(numa_ids))
    for numa, cores in node.cores_by_numa:
        listed = Path(f"/sys/devices/system/node/node{numa}/cpulist")
        if listed.exists():
            from slicebox.pool.cpulist import parse_cpulist
            assert set(cores) <= set(parse_cpulist(listed.read_text()))
    assert node.memory_gib > 0.1
    assert any(v.path == "/" for v in node.volumes)
    for volume in node.volumes:
        assert volume.capacity_gib > 0 and volume.read_mbps > 0


def test_cores_grouped_by_numa_from_sysfs(tmp_path: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    halves = (allowed[: max(1, len(allowed) // 2)], allowed[max(1, len(allowed) // 2):])
    for numa, cores in enumerate(halves):
        folder = tmp_path / "devices" / "system" / "node" / f"node{numa}"
        folder.mkdir(parents=True)
        text = ",".join(str(c) for c in cores) + ",4000"  # a core we may not use: dropped
        (folder / "cpulist").write_text(text + "\n")
    got = discover_cores(tmp_path)
    assert got == tuple((numa, tuple(c)) for numa, c in enumerate(halves) if c)
    assert discover_cores(tmp_path / "missing") == ((0, tuple(allowed)),)


def test_tier_guesses(tmp_path: Path) -> None:
    for name, rotational in (("sda", "1"), ("vdb", "0")):
        queue = tmp_path / "block" / name / "queue"
        queue.mkdir(parents=True)
        (queue / "rotational").write_text(rotational)
    disk = tmp_path / "devices" / "sda"
    (disk / "sda1").mkdir(parents=True)
    (disk / "sda1" / "partition").write_text("1")
    (tmp_path / "class" / "block").mkdir(parents=True)
    (tmp_path / "class" / "block" / "sda1").symlink_to(disk / "sda1")
    assert guess_tier("/dev/sda1", "ext4", "/data", tmp_path) is Tier.HDD
    assert guess_tier("/dev/vdb", "xfs", "/scratch", tmp_path) is Tier.SSD
    assert guess_tier("/dev/nvme0n1p2", "ext4", "/", tmp_path) is Tier.NVME
    assert guess_tier("tmpfs", "tmpfs", "/dev/shm", tmp_path) is Tier.TMPFS
    assert guess_tier("fs:/export", "nfs4", "/mnt/data", tmp_path) is Tier.NETWORK
    assert guess_tier("sshfs#me@host:", "fuse.sshfs", "/mnt/remote", tmp_path) is Tier.NETWORK


def test_bandwidth_measured_once_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    calls: list[str] = []

    def fake_measure(mount: str, home: object = None, size: int = 0) -> tuple[float, float]:
        calls.append(mount)
        return 900.0, 450.0

    monkeypatch.setattr(volumes_module, "measure_bandwidth", fake_measure)
    first = discover_volumes(home=tmp_path)
    assert calls and all(v.read_mbps == 900.0 for v in first)
    cached = json.loads((tmp_path / volumes_module.CACHE_FILE).read_text())
    assert len(cached["volumes"]) == len(first)
    calls.clear()
    again = discover_volumes(home=tmp_path)
    assert not calls and [v.read_mbps for v in again] == [v.read_mbps for v in first]


def test_real_measurement_is_small_and_positive(tmp_path: Path) -> None:
    got = volumes_module.measure_bandwidth(str(tmp_path), size=2 << 20)
    assert got is not None and got[0] > 0 and got[1] > 0
    assert not list(tmp_path.iterdir())  # the test file is removed


def test_declared_bandwidth_and_tier_win() -> None:
    config = {"volumes": {"/": {"tier": "nvme", "read_mbps": 1234, "write_mbps": 567,
                                "name": "system"}}}
    (root,) = [v for v in discover_volumes(config=config, measure=False) if v.path == "/"]
    assert (root.name, root.tier, root.read_mbps, root.write_mbps) == (
        "system", Tier.NVME, 1234, 567)
    with pytest.raises(ValueError, match="volumes./.read_mbps"):
        discover_volumes(config={"volumes": {"/": {"read_mbps": -1}}}, measure=False)


def test_mig_profile_from_attributes_when_the_name_does_not_say(tmp_path: Path) -> None:
    nvml = fake_nvml.a100_mig()
    nvml.cards[1].migs[0].label = "MIG device"  # a driver that names instances differently
    card1 = discover_gpus(nvml, tmp_path, numa_nodes={0}).devices[1]
    assert [(m.profile, m.start) for m in card1.mig_instances] == [("4g.40gb", 0)]
