"""The environment a job starts with: the composition, spelled in the variables that
CUDA, PyTorch, OpenMP and the job itself read."""

from __future__ import annotations

from collections.abc import Mapping

from slicebox.pool.composition import Composition
from slicebox.pool.kinds import get_kind
from slicebox.pool.slices import SliceType
from slicebox.spec.job import JobSpec

GIB = 1 << 30


def memory_bytes(comp: Composition) -> int:
    return int(comp.memory_gib * GIB)


def job_environment(base: Mapping[str, str], job_id: str, attempt: int, spec: JobSpec,
                    comp: Composition) -> dict[str, str]:
    # Nothing of the controller's own composition may leak into the job's.
    env = {k: v for k, v in base.items()
           if not k.startswith("SLICEBOX_") and k != "CUDA_VISIBLE_DEVICES"}
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
    if comp.data_path:
        env["SLICEBOX_DATA"] = comp.data_path
    if spec.checkpoint.path:
        env["SLICEBOX_CHECKPOINT_PATH"] = spec.checkpoint.path
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
