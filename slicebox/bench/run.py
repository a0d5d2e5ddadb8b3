"""``python -m slicebox.bench.run WORKLOAD``: one benchmark run, usable as a job's argv.

It trains on the resources it was given (the CPU affinity it inherited or ``--cores``,
the GPU it sees), prints ``:::MLLOG`` and ``:::SLICEBOX`` lines as it goes, and ends with
one JSON line (the `RunResult`, ``"kind": "slicebox.bench.result"``).
Exit status: 0 ok, 1 failed, 3 not supported on this device.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence

from slicebox.bench import cotenancy, registry
from slicebox.bench.config import TrainConfig
from slicebox.bench.precision import unsupported_reason
from slicebox.bench.results import (
    PRECISIONS,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_UNSUPPORTED,
    RunResult,
    parse_precision,
    unsupported,
)

DATA_ENV = "SLICEBOX_DATA"
SHARED_SAMPLE_S = 0.3  # how long to watch the slice's cores for co-tenants
SHARED_CORES = 0.25  # co-tenant use, in cores, above which the slice counts as shared
EXIT_CODES = {STATUS_OK: 0, STATUS_FAILED: 1, STATUS_UNSUPPORTED: 3}


def parse_cores(text: str) -> set[int]:
    """``"0,1"`` or ``"0-3,6"`` -> a set of core ids (the pool's cpulist syntax)."""
    from slicebox.pool.cpulist import parse_cpulist

    try:
        cores = set(parse_cpulist(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--cores wants ids like 0,1 or 0-3, got {text!r}: {exc}"
        ) from None
    if not cores:
        raise argparse.ArgumentTypeError("--cores is empty")
    return cores


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m slicebox.bench.run", description="Run one Slicebox reference workload."
    )
    parser.add_argument("workload", choices=sorted(registry.WORKLOADS))
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--quick", action="store_true", help="smaller model and data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, help="abort (MLPerf 'aborted') after S s")
    parser.add_argument("--epochs", type=int, help="maximum epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument(
        "--max-batch-size", type=int,
        help="elastic job: grow the batch with the cores/GPUs given, up to this (lr in step)")
    parser.add_argument("--target", type=float, help="override the quality target")
    parser.add_argument("--threads", type=int, help="torch threads (default: cores in affinity)")
    parser.add_argument("--cores", type=parse_cores, help="pin to these cores, e.g. 0,1")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--memory-fraction",
        type=float,
        help="GPU share: cap this process at this fraction of GPU memory",
    )
    parser.add_argument(
        "--data", help=f"dataset file (recsys: click-log .npz); default ${DATA_ENV}"
    )
    parser.add_argument("--server-qps", type=float, help="inference: LoadGen Server arrival rate")
    parser.add_argument(
        "--checkpoint-every", type=int, metavar="STEPS",
        help="under Slicebox: steps between checkpoints (default: every 30 s; also on the "
             "stop signal)",
    )
    parser.add_argument(
        "--output-dir", help="keep the run's files here (inference: LoadGen's logs)"
    )
    return parser


def _pin_cores(cores: set[int] | None) -> None:
    if cores is None:
        return
    allowed = os.sched_getaffinity(0)
    if not cores <= allowed:
        raise SystemExit(
            f"--cores {sorted(cores)} not within this process's cores {sorted(allowed)}"
        )
    os.sched_setaffinity(0, cores)


def _wait_passively_if_shared(device: str) -> str:
    """Make OpenMP threads sleep, not spin, when other processes use this slice's cores.

    With every thread spinning at each barrier, one thread preempted by a co-tenant
    stalls the rest: on a 2-core slice with one core's worth of co-tenant we measured
    train steps 100-200x slower (recsys bf16: 4.3 s a step). Passive waiting costs
    2-3x on these small models when the slice is exclusive, so it is chosen only when
    it is not. Returns a note for the result ("" when nothing was changed).
    """
    cores = os.sched_getaffinity(0)
    if device != "cpu" or len(cores) < 2 or "OMP_WAIT_POLICY" in os.environ:
        return ""
    meter = cotenancy.CoTenancyMeter(tuple(sorted(cores)))
    meter.start()
    time.sleep(SHARED_SAMPLE_S)
    others = meter.stop(SHARED_SAMPLE_S)
    if others is None or others < SHARED_CORES:
        return ""
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return (
        f"other processes were using {others:.1f} of this slice's {len(cores)} cores at "
        "start, so OpenMP threads wait passively instead of spinning"
    )


def _configure_torch(args: argparse.Namespace) -> None:
    import torch

    # A slice is a core set: one thread per core it holds, never torch's default of
    # every core on the machine, which would oversubscribe the slice.
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    if args.memory_fraction is not None:
        if not 0 < args.memory_fraction <= 1:
            raise SystemExit(f"--memory-fraction must be in (0, 1], got {args.memory_fraction}")
        if not args.device.startswith("cuda"):
            raise SystemExit("--memory-fraction needs a CUDA --device")
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction, torch.device(args.device))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    data = args.data
    if data is None and registry.get(args.workload).reads_data_file:
        data = os.environ.get(DATA_ENV) or None
    return TrainConfig(
        seed=args.seed,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        max_seconds=args.max_seconds,
        quality_target=args.target,
        device=args.device,
        precision=parse_precision(args.precision),
        quick=args.quick,
        data_path=data,
        server_qps=args.server_qps,
        output_dir=args.output_dir,
        checkpoint_every=args.checkpoint_every,
        max_batch_size=args.max_batch_size,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    _pin_cores(args.cores)  # before torch starts its thread pools
    shared_note = _wait_passively_if_shared(config.device)
    # Before any GPU setting: on a box without the GPU asked for, the answer is "not
    # supported here", not an error about --memory-fraction.
    reason = unsupported_reason(config.precision, config.device)
    if reason is not None:
        result = unsupported(args.workload, config.precision, config.device, reason)
        print(json.dumps(result.to_dict()), flush=True)
        return EXIT_CODES[result.status]
    _configure_torch(args)
    try:
        result = registry.train(args.workload, config)
    except Exception as exc:  # a crashed run is still a result the suite must record
        traceback.print_exc(file=sys.stderr)
        result = RunResult(
            workload=args.workload,
            precision=args.precision,
            device=args.device,
            status=STATUS_FAILED,
            reason=f"{type(exc).__name__}: {exc}",
            seed=args.seed,
        )
    if shared_note and result.status == STATUS_OK:
        result = dataclasses.replace(
            result, note="; ".join(filter(None, [result.note, shared_note]))
        )
    print(json.dumps(result.to_dict()), flush=True)
    return EXIT_CODES.get(result.status, 1)


if __name__ == "__main__":
    sys.exit(main())
