"""Alibaba's 2023 GPU-sharing cluster (`cluster-trace-gpu-v2023`, the FGD paper).

Pod lists (`openb_pod_list_*.csv`) become jobs; node lists (`openb_node_list_*.csv`)
become `TraceNode` records, which `pool` turns into a pool. CPU is given in milli-cores
and memory in MiB; a pod with `gpu_milli` < 1000 asks for that share of one GPU.
"""

from __future__ import annotations

import os

from slicebox.pool.kinds import get_kind, known_kinds
from slicebox.sim.traces import csvrows, limits, model

# FGD's variant pod lists (its artifact's `openb_pod_list_<variant>.csv`) carry only
# these five: its experiment never reads time. Every other column is optional.
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
WORKLOAD = "alibaba"
_MILLI = 1000.0
_MIB_PER_GIB = 1024.0


def read_alibaba_pods(
    path: str | os.PathLike[str], skip_bad_lines: bool = False
) -> model.TraceReadResult:
    """Read a pod list; jobs come back in arrival (creation) order.

    Only `name, cpu_milli, memory_mib, num_gpu, gpu_milli` are required (the form of
    FGD's variant pod lists). `arrival` is `creation_time` (already seconds since the
    trace's start); without that column every pod arrives at 0, in file order.
    `duration` is `deletion_time - scheduled_time`, the time the pod held its
    resources, and None for a pod never scheduled (phase Pending). `gpu_fraction` is
    `gpu_milli / 1000` for a single-GPU pod asking for less than a whole GPU.
    `gpu_spec` lists the GPU models allowed ('|'-separated in the file; empty = any),
    and `group` is the QoS class (LS, BE, ...).
    """
    name = os.fspath(path)
    errors = csvrows.LineErrors(name, skip_bad_lines)
    with csvrows.open_table(name, POD_COLUMNS, errors) as table:
        at = table.columns
        i_name, i_cpu, i_mem = at["name"], at["cpu_milli"], at["memory_mib"]
        i_gpus, i_milli, i_created = at["num_gpu"], at["gpu_milli"], at.get("creation_time")
        i_spec, i_qos = at.get("gpu_spec"), at.get("qos")
        i_deleted, i_scheduled = at.get("deletion_time"), at.get("scheduled_time")
        seen: set[str] = set()

        def convert(row: csvrows.Row) -> model.TraceJob:
            fields = row.fields
            pod = _unique_name(fields[i_name], "name", seen)
            num_gpus = _count(fields[i_gpus], "num_gpu", limits.MAX_JOB_GPUS)
            # Bounded only against absurd digits here: _gpu_fraction says
            # what is wrong with any share outside 0..1000.
            gpu_milli = _count(fields[i_milli], "gpu_milli", limits.GPU_MILLI * limits.MAX_JOB_GPUS)
            fraction = _gpu_fraction(num_gpus, gpu_milli)
            spec = fields[i_spec].strip() if i_spec is not None else ""
            job = model.TraceJob(
                id=pod,
                arrival=_seconds(fields[i_created], "creation_time") if i_created is not None
                else 0.0,
                num_gpus=num_gpus,
                workload=WORKLOAD,
                gpu_fraction=fraction,
                cpus=_count(fields[i_cpu], "cpu_milli", limits.MAX_CPU_MILLI) / _MILLI,
                memory_gib=_count(fields[i_mem], "memory_mib", limits.MAX_MEMORY_MIB)
                / _MIB_PER_GIB,
                duration=_duration(fields, i_scheduled, i_deleted),
                gpu_spec=_gpu_spec(spec),
                group=_group(fields, i_qos),
            )
            seen.add(pod)
            return job

        jobs = csvrows.convert_rows(table.rows, convert, errors)
    jobs.sort(key=lambda job: job.arrival)
    return model.TraceReadResult(name, jobs, errors.skipped, tuple(errors.first))


def read_alibaba_nodes(
    path: str | os.PathLike[str], skip_bad_lines: bool = False
) -> model.NodeReadResult:
    """Read a node list in file order; a node with no GPU has `gpu_model` None."""
    name = os.fspath(path)
    errors = csvrows.LineErrors(name, skip_bad_lines)
    with csvrows.open_table(name, NODE_COLUMNS, errors) as table:
        at = table.columns
        i_name, i_cpu, i_mem, i_gpus, i_model = (
            at["sn"],
            at["cpu_milli"],
            at["memory_mib"],
            at["gpu"],
            at["model"],
        )
        seen: set[str] = set()

        def convert(row: csvrows.Row) -> model.TraceNode:
            fields = row.fields
            node = _unique_name(fields[i_name], "sn", seen)
            gpus = _count(fields[i_gpus], "gpu", limits.MAX_NODE_GPUS)
            gpu_model = fields[i_model].strip() or None
            if gpus > 0 and gpu_model is None:
                raise csvrows.RowError(
                    f"column 'model' is empty on a node with {gpus} GPUs", "model"
                )
            if gpus == 0 and gpu_model is not None:
                raise csvrows.RowError(
                    f"column 'model' is {csvrows.shorten(gpu_model)} on a node with 0 GPUs",
                    "model",
                )
            if gpu_model is not None:
                gpu_model = _known_kind(gpu_model, "model")
            record = model.TraceNode(
                name=node,
                cpus=_count(fields[i_cpu], "cpu_milli", limits.MAX_CPU_MILLI) / _MILLI,
                memory_gib=_count(fields[i_mem], "memory_mib", limits.MAX_MEMORY_MIB)
                / _MIB_PER_GIB,
                gpus=gpus,
                gpu_model=gpu_model,
            )
            seen.add(node)
            return record

        nodes = csvrows.convert_rows(table.rows, convert, errors)
    return model.NodeReadResult(name, nodes, errors.skipped, tuple(errors.first))


def _unique_name(text: str, column: str, seen: set[str]) -> str:
    # The caller adds the name to `seen` only once the whole row converted, so a
    # skipped bad row does not make a later good row with its name a "duplicate".
    name = csvrows.parse_name(text, column)
    if name in seen:
        raise csvrows.RowError(f"duplicate name {name!r}", column)
    return name


def _count(text: str, column: str, maximum: int) -> int:
    value = csvrows.parse_int(text, column, high=maximum)
    if value < 0:
        raise csvrows.RowError(
            f"column {column!r}: negative value {csvrows.shorten(text.strip())}", column
        )
    return value


def _seconds(text: str, column: str) -> float:
    value = csvrows.parse_float(text, column, high=limits.MAX_SECONDS)
    if value < 0:
        raise csvrows.RowError(f"column {column!r}: negative time {value:g}", column)
    return value


def _gpu_spec(text: str) -> tuple[str, ...] | None:
    kinds = tuple(kind.strip() for kind in text.split("|") if kind.strip())
    for kind in kinds:
        _known_kind(kind, "gpu_spec")
    return kinds or None


def _known_kind(text: str, column: str) -> str:
    """A GPU model the kind catalogue knows (a pod or node of an unknown model could
    not be placed or given a speed), as the trace spells it."""
    name = csvrows.parse_name(text, column)
    try:
        get_kind(name)
    except KeyError:
        raise csvrows.RowError(
            f"column {column!r}: unknown GPU model {csvrows.shorten(name)}; known: "
            f"{', '.join(known_kinds())}",
            column,
        ) from None
    return name


def _group(fields: list[str], i_qos: int | None) -> str | None:
    if i_qos is None or not fields[i_qos].strip():
        return None
    return csvrows.parse_name(fields[i_qos], "qos")


def _gpu_fraction(num_gpus: int, gpu_milli: int) -> float | None:
    if num_gpus == 0:
        if gpu_milli != 0:
            raise csvrows.RowError(f"gpu_milli {gpu_milli} on a pod with num_gpu 0", "gpu_milli")
        return None
    if gpu_milli > _MILLI or gpu_milli == 0:
        raise csvrows.RowError(f"gpu_milli {gpu_milli} outside 1..1000 on a GPU pod", "gpu_milli")
    if gpu_milli == _MILLI:
        return None
    if num_gpus > 1:
        # The trace only shares single GPUs; a fraction of each of several GPUs has
        # no meaning in FGD's model, so it is bad input rather than a guess.
        raise csvrows.RowError(
            f"gpu_milli {gpu_milli} < 1000 with num_gpu {num_gpus} > 1", "gpu_milli"
        )
    return gpu_milli / _MILLI


def _duration(fields: list[str], i_scheduled: int | None, i_deleted: int | None) -> float | None:
    if i_scheduled is None or i_deleted is None:
        return None
    scheduled, deleted = fields[i_scheduled].strip(), fields[i_deleted].strip()
    if not scheduled or not deleted:
        return None  # never scheduled (Pending), or still running at the trace's end
    start = _seconds(scheduled, "scheduled_time")
    end = _seconds(deleted, "deletion_time")
    if end < start:
        raise csvrows.RowError(
            f"negative duration {end - start:g} (deletion_time {end:g} < scheduled_time {start:g})",
            "deletion_time",
        )
    return end - start
