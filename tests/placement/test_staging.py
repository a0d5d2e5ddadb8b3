"""Data staging: fastest volume with room, reuse of copies, LRU eviction, persistence."""

from __future__ import annotations

import pytest

from slicebox.placement import DataCache, PoolState
from slicebox.placement.staging import CacheEntry, cache_dir_name
from slicebox.pool.composition import CACHE_DIR
from slicebox.pool.files import parse_pool
from slicebox.pool.model import Node, Tier, Volume
from slicebox.spec.demand import DatasetRef
from tests.placement.helpers import by_job, job, place, running


def _node(*volumes: Volume) -> Node:
    return Node("n", ((0, (0, 1, 2, 3)),), 64, volumes=volumes)


NVME = Volume("nvme", "/fast", Tier.NVME, 100, 3000, 2000)
SSD = Volume("ssd", "/ssd", Tier.SSD, 1000, 500, 400)
HDD = Volume("hdd", "/", Tier.HDD, 4000, 150, 150)
SHARE = Volume("share", "/mnt/share", Tier.NETWORK, 10**6, 100, 100, shared=True)


def test_slow_data_is_staged_to_the_fastest_volume_with_room() -> None:
    cache = DataCache(max_fill=1.0)
    node = _node(HDD, SSD, NVME)
    ds = DatasetRef("imagenet", "/mnt/share/imagenet", 60)
    staging = cache.choose(node, ds, shared=(SHARE,))
    assert staging is not None and not staging.cached and not staging.evict
    assert (staging.volume, staging.target) == ("nvme", f"/fast/{CACHE_DIR}/imagenet")
    assert staging.source == "/mnt/share/imagenet" and staging.size_gib == 60
    # Too big for the NVMe: the next fastest with room.
    big = cache.choose(node, DatasetRef("big", "/mnt/share/big", 500), shared=(SHARE,))
    assert big is not None and big.volume == "ssd"
    # Already on the fastest volume: no staging. On the HDD: staged.
    assert cache.choose(node, DatasetRef("here", "/fast/data/here", 1)) is None
    assert cache.choose(node, DatasetRef("slow", "/home/me/data", 1)) is not None


def test_data_on_the_fastest_volume_with_room_is_not_staged() -> None:
    cache = DataCache(max_fill=1.0)
    node = _node(SSD, NVME)
    # 500 GiB do not fit the NVMe, and they already sit on the SSD: read them there.
    assert cache.choose(node, DatasetRef("d", "/ssd/d", 500)) is None


def test_name_only_dataset_without_copy_is_not_staged() -> None:
    assert DataCache().choose(_node(NVME), DatasetRef("named", None, 1)) is None


def test_second_job_reuses_the_copy() -> None:
    cache = DataCache(max_fill=1.0)
    node = _node(HDD, NVME)
    ds = DatasetRef("digits", "/mnt/share/digits", 2)
    first = cache.choose(node, ds, shared=(SHARE,))
    assert first is not None and not first.cached
    cache.commit("n", first, now=10)
    second = cache.choose(node, ds, shared=(SHARE,))
    assert second is not None and second.cached and second.target == first.target
    assert cache.get("digits", "n") == CacheEntry("digits", "n", "nvme", first.target, 2, 10)


def test_lru_eviction_when_full() -> None:
    node = _node(HDD, NVME)
    cache = DataCache([CacheEntry("old", "n", "nvme", "/fast/slicebox-cache/old", 40, 1),
                       CacheEntry("mid", "n", "nvme", "/fast/slicebox-cache/mid", 40, 2),
                       CacheEntry("other", "m", "nvme", "/fast/slicebox-cache/other", 90, 0)],
                      max_fill=1.0)
    ds = DatasetRef("new", "/data/new", 50)
    staging = cache.choose(node, ds)
    assert staging is not None and staging.volume == "nvme"
    assert staging.evict == ("/fast/slicebox-cache/old",)
    # A copy a running job reads is never evicted: the next least recently used goes.
    staging = cache.choose(node, ds, in_use={("old", "n")})
    assert staging is not None and staging.evict == ("/fast/slicebox-cache/mid",)
    # Both in use: the NVMe cannot make room; the HDD source is already the next best.
    assert cache.choose(node, ds, in_use={("old", "n"), ("mid", "n")}) is None
    cache.commit("n", cache.choose(node, ds) or pytest.fail("no staging"), now=5)
    assert {e.key for e in cache.entries()} == {"mid", "new", "other"}
    cache.touch("mid", "n", now=9)
    evicted = cache.choose(node, DatasetRef("next", "/data/next", 50))
    assert evicted is not None and evicted.evict == ("/fast/slicebox-cache/new",)


def test_records_round_trip_and_bad_records() -> None:
    cache = DataCache([CacheEntry("a", "n", "nvme", "/fast/slicebox-cache/a", 1.5, 3.0)])
    again = DataCache.from_records(cache.to_records())
    assert again.entries() == cache.entries()
    with pytest.raises(ValueError, match="data cache record 0"):
        DataCache.from_records([{"key": "a"}])


def test_cache_dir_names_are_safe() -> None:
    assert cache_dir_name("digits") == "digits"
    name = cache_dir_name("/home/me/data sets/cifar")
    assert "/" not in name and " " not in name and name.startswith("home_me_data_sets_cifar-")
    assert cache_dir_name("/a/b") != cache_dir_name("/a_b")


def test_placement_fills_staging_and_data_path() -> None:
    pool = parse_pool({"nodes": [{
        "name": "box", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "L4", "count": 2}],
        "volumes": [{"name": "nvme", "path": "/nvme", "tier": "nvme", "capacity_gib": 100,
                     "read_mbps": 3000, "write_mbps": 2000},
                    {"name": "root", "path": "/", "tier": "hdd", "capacity_gib": 1000,
                     "read_mbps": 150, "write_mbps": 150}]}],
        "shared_volumes": [{"name": "share", "path": "/mnt/share", "tier": "network",
                            "capacity_gib": 10000, "read_mbps": 100, "write_mbps": 100}]})
    state = PoolState(pool)
    data = DataCache()
    ds = DatasetRef("digits", "/mnt/share/digits", 1)
    jobs = [job("a", 1, dataset=ds), job("b", 1, dataset=ds),
            job("c", 0, dataset=DatasetRef("local", "/nvme/local", 1))]
    plan = place(pool, state, jobs, data=data)
    placed = by_job(plan)
    a, b, c = placed["a"].staging, placed["b"].staging, placed["c"].staging
    assert a is not None and not a.cached and placed["a"].data_path == a.target
    assert b is not None and b.cached and b.target == a.target  # same round: one copy
    assert c is None and placed["c"].data_path == "/nvme/local"
    assert not data.entries()  # placement plans; the backend's commit records
    data.commit("box", a, now=1)
    state.apply(plan)
    views = [running(j, state.composition(j.id) or pytest.fail(j.id)) for j in jobs]
    later = place(pool, state, [*views, job("d", 0, dataset=ds)], data=data)
    d = by_job(later)["d"].staging
    assert d is not None and d.cached
