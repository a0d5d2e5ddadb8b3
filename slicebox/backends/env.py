"""The environment a job starts with: the composition, spelled in the variables that
CUDA, PyTorch, OpenMP and the job itself read."""

from __future__ import annotations

from collections.abc import Mapping

from slicebox.pool.composition import Composition
from slicebox.pool.kinds import get_kind
from slicebox.pool.slices import SliceType
from slicebox.spec.job import JobSpec

GIB = 1 << 30
# What torch.distributed's env:// reads; only a gang launcher sets these (rank_environment).
TORCH_DISTRIBUTED = frozenset({"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"})


def memory_bytes(comp: Composition) -> int:
    return int(comp.memory_gib * GIB)


def job_environment(base: Mapping[str, str], job_id: str, attempt: int, spec: JobSpec,
                    comp: Composition, checkpoint_dir: str | None = None) -> dict[str, str]:
    """``checkpoint_dir``: where the job keeps checkpoints when its spec names no
    ``checkpoint.path`` (the backend's folder for it); the job reads it from
    ``SLICEBOX_CHECKPOINT_PATH`` (see ``slicebox.sdk.checkpoint``)."""
    # Nothing of the controller's own composition may leak into the job's: a stale
    # WORLD_SIZE would make a one-node job wait for peers that never come.
    env = {k: v for k, v in base.items()
           if not k.startswith("SLICEBOX_") and k != "CUDA_VISIBLE_DEVICES"
           and k not in TORCH_DISTRIBUTED}
    threads = str(max(len(comp.cores), 1))
    # Thread pools sized to the cores the job has, not to the machine; unbuffered output so
    # progress lines reach the log (and the controller) when they are printed.
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    env.update(spec.env)  # the user's own choices win over those defaults
    env.update({
        "SLICEBOX_JOB_ID": job_id,
        "SLICEBOX_JOB_NAME": spec.name,
        "SLICEBOX_ATTEMPT": str(attempt),
        "SLICEBOX_NODE": comp.node,
        "SLICEBOX_CORES": ",".join(str(c) for c in comp.cores),
        "SLICEBOX_MEMORY_LIMIT_BYTES": str(memory_bytes(comp)),
        # Empty, not unset, for a CPU-only job: unset would show it every GPU.
        "CUDA_VISIBLE_DEVICES": ",".join(s.uuid for s in comp.slices),
    })
    env.update(size_environment(spec, comp))
    if comp.data_path:
        env["SLICEBOX_DATA"] = comp.data_path
    if spec.array_index is not None:
        env["SLICEBOX_ARRAY_INDEX"] = str(spec.array_index)
    if spec.replica_of is not None:  # a service's replica: the port the controller chose
        env["SLICEBOX_SERVICE_PORT"] = str(spec.replica_of.port)
    checkpoints = spec.checkpoint.path or checkpoint_dir
    if checkpoints:
        env["SLICEBOX_CHECKPOINT_PATH"] = checkpoints
    env["SLICEBOX_CHECKPOINT_SIGNAL"] = spec.checkpoint.signal
    shared = [s for s in comp.slices if s.shape is SliceType.FRACTION]
    if shared:
        cap = shared[0]
        env["SLICEBOX_GPU_MEMORY_GIB"] = f"{cap.memory_gib:g}"
        # For torch.cuda.set_per_process_memory_fraction (slicebox.sdk applies it).
        share = cap.memory_gib / get_kind(cap.kind).memory_gib
        env["SLICEBOX_GPU_MEMORY_FRACTION"] = f"{share:.4f}"
        # Enforced when an MPS daemon serves the card; harmless without one.
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(int(cap.compute * 100), 1))
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={int(cap.memory_gib * 1024)}M"
        # Under a cap, fragmentation costs memory the job cannot get back.
        env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    return env


def size_environment(spec: JobSpec, comp: Composition) -> dict[str, str]:
    """The size this attempt was given and the range the job declared, so an elastic job
    can scale its batch (``slicebox.sdk.elastic_batch``): cores, GPUs, data-parallel
    width (one worker per GPU; 1 for a CPU-only job), and the spec's {min, max}.
    For one rank of a gang, :func:`rank_environment` replaces the width with the gang's."""
    res = spec.resources
    gpus = len(comp.slices)
    return {
        "SLICEBOX_CPUS": str(comp.core_count),
        "SLICEBOX_GPUS": str(gpus),
        "SLICEBOX_WORLD_SIZE": str(max(gpus, 1)),
        "SLICEBOX_MIN_CPUS": str(res.min_cpus),
        "SLICEBOX_MAX_CPUS": str(res.max_cpus),
        "SLICEBOX_MIN_GPUS": str(res.min_gpus),
        "SLICEBOX_MAX_GPUS": str(res.max_gpus),
    }


MAX_HOST_CHARS = 253  # a DNS name's limit; an IPv6 literal is shorter


def rank_environment(rank: int, world_size: int, master_addr: str, master_port: int,
                     local_rank: int = 0) -> dict[str, str]:
    """One rank's ``torch.distributed`` variables (``init_method="env://"``), for the
    process a gang launcher starts for rank ``rank`` of ``world_size``; rank 0 listens on
    ``master_addr:master_port``. Applied after :func:`job_environment`, it also makes
    ``SLICEBOX_WORLD_SIZE`` the gang's process count (on one node it stays the node's
    data-parallel width), and ``SLICEBOX_RANK`` the rank.

    Raises ``ValueError`` for values no gang can have: these come from the launcher,
    never from a user, so a bad one is a bug to stop at, not input to explain."""
    for name, value in (("rank", rank), ("world_size", world_size),
                        ("master_port", master_port), ("local_rank", local_rank)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if not 0 <= local_rank < world_size:
        raise ValueError(f"local_rank must be in [0, {world_size}), got {local_rank}")
    if not 1 <= master_port <= 65535:
        raise ValueError(f"master_port must be in 1..65535, got {master_port}")
    if (not isinstance(master_addr, str) or not master_addr
            or len(master_addr) > MAX_HOST_CHARS
            or any(c.isspace() or c == "\0" for c in master_addr)):
        raise ValueError(f"master_addr must be a host name or address, got {master_addr!r}")
    return {
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "WORLD_SIZE": str(world_size),
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "SLICEBOX_WORLD_SIZE": str(world_size),
        "SLICEBOX_RANK": str(rank),
    }
