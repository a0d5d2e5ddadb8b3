"""How a reference workload finds its gang, and what a rank other than 0 prints (no
processes started: the 2-rank runs are in test_ddp.py)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from torch import distributed as dist

from slicebox.backends.env import rank_environment
from slicebox.bench import image, registry
from slicebox.bench.config import TrainConfig
from slicebox.bench.distributed import Gang, GangError, _RankOutput, joined, rank_from_env
from slicebox.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ray"


def test_the_launchers_variables_make_a_rank_and_no_world_size_makes_none():
    assert rank_from_env(rank_environment(1, 3, "10.0.0.2", 29500)) == (1, 3)
    assert rank_from_env({}) is None
    assert rank_from_env(rank_environment(0, 1, "h", 1)) is None  # a gang of one: alone


@pytest.mark.parametrize(("env", "named"), [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK"),
    ({"WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_PORT": "1"}, "MASTER_ADDR"),
    ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "99999"},
     "MASTER_PORT"),
])
def test_a_wrong_gang_variable_is_named(env, named):
    with pytest.raises(GangError, match=named):
        rank_from_env(env)


def test_a_wrong_timeout_is_named_before_anything_waits():
    env = {**rank_environment(1, 2, "127.0.0.1", 1), "SLICEBOX_GANG_TIMEOUT_S": "forever"}
    with pytest.raises(GangError, match="SLICEBOX_GANG_TIMEOUT_S"), joined(env):
        pass
    assert not dist.is_initialized()


def test_alone_nothing_is_joined_and_stdout_is_untouched():
    before = sys.stdout
    with joined({}) as gang:
        assert gang is None and sys.stdout is before
    assert not dist.is_initialized()


def test_another_rank_drops_progress_lines_and_prefixes_the_rest():
    out = io.StringIO()
    rank = _RankOutput(1, out)
    print(':::SLICEBOX {"samples": 3}', file=rank)
    print(':::MLLOG {"key": "run_start"}', file=rank)
    rank.write("half a ")
    rank.write("line\nand another\n:::SLI")
    rank.write("CEBOX {}\n")
    assert out.getvalue() == "[rank 1] half a line\n[rank 1] and another\n"


def test_a_shard_per_rank_covers_each_global_batch_once():
    batch = torch.arange(10, 42)
    shards = [Gang(r, 3).shard(batch) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == batch.tolist()
    assert [len(s) for s in shards] == [11, 11, 10]


def test_a_batch_too_small_to_share_is_refused_before_the_gang_is_used():
    # Gang(0, 64) was never initialised: the check has to come before any collective.
    with pytest.raises(GangError, match="batch size 32 is smaller than the gang's 64"):
        image.build(TrainConfig(quick=True), Gang(0, 64))


def test_the_ray_example_asks_for_two_cpu_nodes_and_runs_a_reference_workload():
    spec = load_spec(EXAMPLES / "ddp-digits.yaml")
    assert spec.resources.nodes == 2 and spec.resources.max_gpus == 0
    assert list(spec.command[:3]) == ["python", "-m", "slicebox.bench.run"]
    assert spec.command[3] in registry.WORKLOADS
