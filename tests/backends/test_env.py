"""The variables a job starts with spell out its composition."""

from __future__ import annotations

from slicebox.backends.env import job_environment
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
