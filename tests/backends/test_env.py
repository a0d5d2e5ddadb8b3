"""The variables a job starts with spell out its composition."""

from __future__ import annotations

import pytest

from slicebox.backends.env import job_environment, rank_environment
from slicebox.pool.composition import Composition
from slicebox.pool.slices import Slice, SliceType
from slicebox.spec import parse_spec


def test_a_fractional_share_carries_its_caps_and_nothing_leaks_from_the_controller():
    share = Slice("n0", 3, "H100", SliceType.FRACTION, 0.5, 20.0, "GPU-aaaa")
    comp = Composition.on_node("j1", "n0", (share,), (8, 9, 10), 16.0, (0,), "/fast/digits")
    spec = parse_spec({"name": "t", "command": ["python3", "train.py"],
                       "env": {"OMP_NUM_THREADS": "1", "SEED": "3"},
                       "checkpoint": {"signal": "USR1", "path": "/ckpt"}})
    base = {"PATH": "/usr/bin", "SLICEBOX_JOB_ID": "controller", "CUDA_VISIBLE_DEVICES": "0,1"}
    env = job_environment(base, "j1", 2, spec, comp)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa" and env["SLICEBOX_JOB_ID"] == "j1"
    assert env["SLICEBOX_CORES"] == "8,9,10" and env["SLICEBOX_ATTEMPT"] == "2"
    assert env["SLICEBOX_MEMORY_LIMIT_BYTES"] == str(16 << 30)
    assert env["SLICEBOX_DATA"] == "/fast/digits" and env["PATH"] == "/usr/bin"
    assert env["SLICEBOX_GPU_MEMORY_GIB"] == "20"
    assert float(env["SLICEBOX_GPU_MEMORY_FRACTION"]) == round(20 / 80, 4)
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert env["OMP_NUM_THREADS"] == "1" and env["SEED"] == "3"  # the user's choice wins
    assert env["SLICEBOX_CHECKPOINT_SIGNAL"] == "SIGUSR1"
    assert env["SLICEBOX_CHECKPOINT_PATH"] == "/ckpt"


def test_a_cpu_job_sees_no_gpu_at_all():
    comp = Composition.on_node("j2", "n0", (), (0,), 1.0)
    env = job_environment({}, "j2", 1, parse_spec({"name": "t", "command": ["true"]}), comp)
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "1"
    assert "SLICEBOX_DATA" not in env and "SLICEBOX_GPU_MEMORY_GIB" not in env


def test_a_gang_rank_gets_torch_distributed_variables_and_the_gangs_width():
    comp = Composition.on_node("j3", "n1", (), (0, 1), 2.0)
    env = job_environment({}, "j3", 1, parse_spec({"name": "t", "command": ["true"]}), comp)
    assert env["SLICEBOX_WORLD_SIZE"] == "1"  # one node, no GPU: one worker
    env.update(rank_environment(1, 2, "10.0.0.7", 29500))
    assert {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
                                "LOCAL_RANK", "SLICEBOX_WORLD_SIZE", "SLICEBOX_RANK")} == {
        "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1",
        "LOCAL_RANK": "0", "SLICEBOX_WORLD_SIZE": "2", "SLICEBOX_RANK": "1"}
    assert env["SLICEBOX_CORES"] == "0,1"  # the part's own composition is untouched


def test_a_single_node_job_inherits_no_torch_distributed_variables():
    comp = Composition.on_node("j4", "n0", (), (0,), 1.0)
    base = {"WORLD_SIZE": "8", "RANK": "3", "MASTER_ADDR": "h", "MASTER_PORT": "1",
            "LOCAL_RANK": "3", "PATH": "/bin"}
    env = job_environment(base, "j4", 1, parse_spec({"name": "t", "command": ["true"]}), comp)
    # The controller's own (say it runs under torchrun) would make the job wait for peers.
    assert not {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"} & set(env)
    assert env["PATH"] == "/bin" and env["SLICEBOX_WORLD_SIZE"] == "1"
    mine = job_environment(base, "j4", 1, parse_spec(
        {"name": "t", "command": ["true"], "env": {"WORLD_SIZE": "1"}}), comp)
    assert mine["WORLD_SIZE"] == "1"  # the user's own choice still wins


@pytest.mark.parametrize(("args", "field"), [
    ((2, 2, "h", 1), "rank"), ((-1, 2, "h", 1), "rank"), ((0, 0, "h", 1), "world_size"),
    ((0, 2, "h", 0), "master_port"), ((0, 2, "h", 65536), "master_port"),
    ((0, 2, "", 1), "master_addr"), ((0, 2, "a b", 1), "master_addr"),
    ((0, 2, "a\0", 1), "master_addr"), ((0, 2, "h" * 254, 1), "master_addr"),
    ((True, 2, "h", 1), "rank"), ((0, 2, "h", 1, 2), "local_rank"),
])
def test_impossible_rank_values_are_refused_naming_the_value(args, field):
    with pytest.raises(ValueError, match=field):
        rank_environment(*args)
