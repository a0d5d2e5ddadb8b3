"""GPU check: NVML discovery, then the quick suite on a whole GPU and a fractional share.

Run on a machine with an NVIDIA GPU:

    python benchmarks/gpu_check.py [--budget 270] [--out reports/gpu_check.json]

1. NVML (``pynvml``, from ``nvidia-ml-py``): every GPU's name, memory, compute
   capability, MIG mode and MIG instances.
2. The reference workloads in quick mode on ``gpu:0`` (whole), ``gpu:0@0.5`` (memory
   capped at half: a fractional share) and the first MIG instance if MIG is on, in
   fp32 / bf16 / fp16 / 2:4-sparse. Variants the GPU cannot run say so; sparse runs on
   compute capability >= 8.0 also time semi-structured sparse kernels.
3. One table, the results as JSON. A time budget (default 270 s) keeps the whole
   check under 5 minutes: cells not started by then are reported "skipped".
4. MIG re-layout on the first MIG-enabled card, with Slicebox's own code
   (``slicebox.pool.mig_layout`` + ``slicebox.backends.mig_reconfigure``): the plan that
   serves ``--relayout-demand`` (default: seven of the kind's smallest profile) and its
   NVML steps are printed. It is a dry run: only ``--allow-mig-reconfigure`` carries the
   plan out, only on a card with no process on it, and then the original layout is put
   back (new uuids) so the check leaves the card as it found it. MIG mode itself is never
   switched (that needs a GPU reset). ``--relayout-only`` skips the suite.

On a machine without an NVIDIA GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slicebox.bench.report import results_table
from slicebox.bench.suite import SuiteProgress, run_suite, save_results

console = Console()


@dataclass(frozen=True)
class MigInstance:
    uuid: str
    memory_gib: float


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_gib: float
    capability: str
    mig_enabled: bool
    mig_instances: list[MigInstance] = field(default_factory=list)


def _text(value: bytes | str) -> str:
    # Older pynvml versions return bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else value


def discover() -> tuple[list[GpuInfo], str]:
    """(GPUs, "") through NVML, or ([], why not)."""
    try:
        import pynvml
    except ImportError:
        return [], "pynvml is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"NVML did not start ({exc}): no NVIDIA driver or GPU here"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                mig_enabled = (
                    pynvml.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
                )
            except pynvml.NVMLError:  # GPUs without MIG answer NotSupported
                mig_enabled = False
            gpus.append(
                GpuInfo(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_gib=pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30,
                    capability=f"{major}.{minor}",
                    mig_enabled=mig_enabled,
                    mig_instances=_mig_instances(pynvml, handle) if mig_enabled else [],
                )
            )
        return gpus, "" if gpus else "NVML found no GPUs"
    finally:
        pynvml.nvmlShutdown()


def _mig_instances(pynvml: object, handle: object) -> list[MigInstance]:
    nvml = pynvml  # typed loosely: pynvml ships no stubs
    instances = []
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):  # type: ignore[attr-defined]
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)  # type: ignore[attr-defined]
        except nvml.NVMLError:  # type: ignore[attr-defined]  # an empty slot
            continue
        instances.append(
            MigInstance(
                uuid=_text(nvml.nvmlDeviceGetUUID(mig)),  # type: ignore[attr-defined]
                memory_gib=nvml.nvmlDeviceGetMemoryInfo(mig).total / 2**30,  # type: ignore[attr-defined]
            )
        )
    return instances


def torch_cuda_status() -> str:
    """ "" when torch can use the GPU, else why not. Asked of a child process, so this
    one never holds a CUDA context (and its memory) on the GPU being measured."""
    probe = (
        "import torch; print(torch.__version__, torch.version.cuda, "
        "torch.cuda.is_available(), torch.cuda.device_count())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return f"torch failed to start: {done.stderr.strip().splitlines()[-1:]}"
    version, cuda, available, _count = done.stdout.split()
    if cuda == "None":
        return f"torch {version} is a CPU-only build; install a CUDA build of torch"
    if available != "True":
        return f"torch {version} (CUDA {cuda}) sees no usable GPU"
    return ""


def inventory_table(gpus: list[GpuInfo]) -> Table:
    table = Table(title="NVML discovery")
    for column in ("index", "name", "memory GiB", "capability", "MIG", "MIG instances", "uuid"):
        table.add_column(column)
    for gpu in gpus:
        migs = ", ".join(f"{m.uuid} ({m.memory_gib:.1f} GiB)" for m in gpu.mig_instances) or "-"
        table.add_row(
            str(gpu.index),
            gpu.name,
            f"{gpu.memory_gib:.1f}",
            gpu.capability,
            "on" if gpu.mig_enabled else "off",
            migs,
            gpu.uuid,
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for the suite")
    parser.add_argument("--workloads", default="image,lm,recsys,inference")
    parser.add_argument("--precisions", default="fp32,bf16,fp16,sparse")
    parser.add_argument("--out", type=Path, default=Path("reports/gpu_check.json"))
    parser.add_argument("--relayout-demand", default="",
                        help="MIG demand for the re-layout step, e.g. 1g.10gb=7,3g.40gb=1")
    parser.add_argument("--allow-mig-reconfigure", action="store_true",
                        help="carry the re-layout out on an idle card (then restore it)")
    parser.add_argument("--relayout-only", action="store_true",
                        help="only discovery and the MIG re-layout step")
    args = parser.parse_args()
    started = time.monotonic()

    gpus, why_not = discover()
    if not gpus:
        console.print(f"No NVIDIA GPU to check: {why_not}.")
        return 0
    console.print(inventory_table(gpus))
    if args.relayout_only:
        return mig_relayout_check(args.relayout_demand, args.allow_mig_reconfigure)
    problem = torch_cuda_status()
    if problem:
        console.print(f"[red]Cannot run the GPU suite:[/red] {problem}.")
        return 1

    slices = ["gpu:0", "gpu:0@0.5"]
    if gpus[0].mig_instances:
        # With MIG on, the whole GPU is not schedulable: measure an instance instead.
        slices = [f"mig:{gpus[0].mig_instances[0].uuid}"]
    budget = args.budget - (time.monotonic() - started)

    def show(event: SuiteProgress) -> None:
        if event.phase == "done" and event.result is not None:
            r = event.result
            console.print(
                f"[{time.monotonic() - started:5.0f}s] {event.index + 1}/{event.total} "
                f"{r.workload} {r.slice} {r.precision}: {r.status}"
            )

    results = run_suite(
        args.workloads.split(","),
        slices,
        args.precisions.split(","),
        quick=True,
        progress_callback=show,
        time_budget_s=budget,
    )
    console.print(results_table(results, title=f"Slicebox GPU check: {gpus[0].name}"))
    save_results(results, args.out)
    args.out.with_suffix(".nvml.json").write_text(
        json.dumps(
            [
                gpu.__dict__ | {"mig_instances": [m.__dict__ for m in gpu.mig_instances]}
                for gpu in gpus
            ],
            indent=2,
        )
    )
    console.print(f"results: {args.out}; total {time.monotonic() - started:.0f} s")
    failed = [r for r in results if r.status == "failed"]
    relayout = mig_relayout_check(args.relayout_demand, args.allow_mig_reconfigure)
    return 1 if failed or relayout else 0


def parse_demand(text: str) -> dict[str, int]:
    """``1g.10gb=7,3g.40gb=1`` -> {"1g.10gb": 7, "3g.40gb": 1}."""
    demand: dict[str, int] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        profile, _, count = item.partition("=")
        if not count.isdigit() or not 0 < int(count) <= 7:
            raise SystemExit(f"--relayout-demand: {item!r} is not PROFILE=COUNT (1..7)")
        demand[profile.strip()] = int(count)
    return demand


def mig_relayout_check(demand_text: str, allow: bool) -> int:
    """Step 4: the re-layout plan for this machine's first MIG card; 0 unless it failed."""
    import socket

    from slicebox.backends.mig_reconfigure import execute_relayout, load_nvml
    from slicebox.errors import SliceboxError
    from slicebox.pool.gpus import discover_gpus
    from slicebox.pool.mig_layout import (
        CardChange,
        CardLayout,
        Placement,
        RelayoutPlan,
        layout_problem,
        plan_relayout,
    )
    from slicebox.pool.mig_steps import relayout_steps

    nvml = load_nvml()
    if nvml is None:
        console.print("MIG re-layout: pynvml is not installed; skipped")
        return 0
    devices = discover_gpus(nvml).devices
    card = next((d for d in devices if d.mig_enabled), None)
    if card is None:
        console.print("MIG re-layout: no card here has MIG mode on; skipped (switching MIG "
                      "on needs a GPU reset, which this check never does)")
        return 0
    node = socket.gethostname() or "local"
    before = tuple(Placement(m.profile, m.start) for m in card.mig_instances)
    layout = CardLayout(node, card.index, card.kind_name, before)
    kind = card.kind
    demand = parse_demand(demand_text) or {kind.mig_profiles[0].name: 7}
    plan = plan_relayout([layout], demand)
    console.print(f"MIG re-layout on gpu{card.index} ({kind.name}), demand {demand}:")
    console.print(plan.describe(), markup=False)
    for i, step in enumerate(relayout_steps(plan), 1):
        console.print(f"  {i:>2}. {step.describe()}", markup=False)
    for change in plan.changes:
        assert layout_problem(kind, change.target) is None, change.describe()
    if not plan.changes:
        return 0
    if not allow:
        console.print("dry run: pass --allow-mig-reconfigure to carry it out on an idle card")
        return 0
    try:
        done = execute_relayout(plan, nvml, allow=True, node=node)
        console.print(f"carried out: {len(done.done)} steps; restoring the original layout")
        after = CardLayout(node, card.index, card.kind_name, plan.changes[0].target)
        back = RelayoutPlan((), (CardChange(after, before),), (), 0)
        execute_relayout(back, nvml, allow=True, node=node)
    except SliceboxError as exc:
        console.print(f"[red]MIG re-layout:[/red] {exc}")
        return 1
    now = next(d for d in discover_gpus(nvml).devices if d.index == card.index)
    restored = sorted((m.profile, m.start) for m in now.mig_instances)
    ok = restored == sorted((p.profile, p.start) for p in before)
    console.print(f"restored: {'yes' if ok else f'NO, the card now holds {restored}'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
