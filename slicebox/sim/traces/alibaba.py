"""Alibaba's 2023 GPU-sharing cluster (`cluster-trace-gpu-v2023`, the FGD paper).

Pod lists (`openb_pod_list_*.csv`) become jobs; node lists (`openb_node_list_*.csv`)
become `TraceNode` records, which `pool` turns into a pool. CPU is given in milli-cores
and memory in MiB; a pod with `gpu_milli` < 1000 asks for that share of one GPU.
"""

from __future__ import annotations

import os

from slicebox.sim.traces import csvrows, model

POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "creation_time")
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
WORKLOAD = "alibaba"
_MILLI = 1000.0
_MIB_PER_GIB = 1024.0


def read_alibaba_pods(
    path: str | os.PathLike[str], skip_bad_lines: bool = False
) -> model.TraceReadResult:
    """Read a pod list; jobs come back in arrival (creation) order.

    `arrival` is `creation_time` (already seconds since the trace's start).
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
        i_gpus, i_milli, i_created = at["num_gpu"], at["gpu_milli"], at["creation_time"]
        i_spec, i_qos = at.get("gpu_spec"), at.get("qos")
        i_deleted, i_scheduled = at.get("deletion_time"), at.get("scheduled_time")
        seen: set[str] = set()

        def convert(row: csvrows.Row) -> model.TraceJob:
            fields = row.fields
            pod = _unique_name(fields[i_name], seen)
            num_gpus = _count(fields[i_gpus], "num_gpu")
            gpu_milli = _count(fields[i_milli], "gpu_milli")
            fraction = _gpu_fraction(num_gpus, gpu_milli)
            spec = fields[i_spec].strip() if i_spec is not None else ""
            job = model.TraceJob(
                id=pod,
                arrival=_seconds(fields[i_created], "creation_time"),
                num_gpus=num_gpus,
                workload=WORKLOAD,
                gpu_fraction=fraction,
                cpus=_count(fields[i_cpu], "cpu_milli") / _MILLI,
                memory_gib=_count(fields[i_mem], "memory_mib") / _MIB_PER_GIB,
                duration=_duration(fields, i_scheduled, i_deleted),
                gpu_spec=tuple(kind for kind in spec.split("|") if kind) or None,
                group=(fields[i_qos].strip() or None) if i_qos is not None else None,
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
            node = _unique_name(fields[i_name], seen)
            gpus = _count(fields[i_gpus], "gpu")
            gpu_model = fields[i_model].strip() or None
            if gpus > 0 and gpu_model is None:
                raise csvrows.RowError(f"column 'model' is empty on a node with {gpus} GPUs")
            if gpus == 0 and gpu_model is not None:
                raise csvrows.RowError(f"column 'model' is {gpu_model!r} on a node with 0 GPUs")
            record = model.TraceNode(
                name=node,
                cpus=_count(fields[i_cpu], "cpu_milli") / _MILLI,
                memory_gib=_count(fields[i_mem], "memory_mib") / _MIB_PER_GIB,
                gpus=gpus,
                gpu_model=gpu_model,
            )
            seen.add(node)
            return record

        nodes = csvrows.convert_rows(table.rows, convert, errors)
    return model.NodeReadResult(name, nodes, errors.skipped, tuple(errors.first))


def _unique_name(text: str, seen: set[str]) -> str:
    # The caller adds the name to `seen` only once the whole row converted, so a
    # skipped bad row does not make a later good row with its name a "duplicate".
    name = text.strip()
    if not name:
        raise csvrows.RowError("the name column is empty")
    if name in seen:
        raise csvrows.RowError(f"duplicate name {name!r}")
    return name


def _count(text: str, column: str) -> int:
    value = csvrows.parse_int(text, column)
    if value < 0:
        raise csvrows.RowError(f"column {column!r}: negative value {value}")
    return value


def _seconds(text: str, column: str) -> float:
    value = csvrows.parse_float(text, column)
    if value < 0:
        raise csvrows.RowError(f"column {column!r}: negative time {value:g}")
    return value


def _gpu_fraction(num_gpus: int, gpu_milli: int) -> float | None:
    if num_gpus == 0:
        if gpu_milli != 0:
            raise csvrows.RowError(f"gpu_milli {gpu_milli} on a pod with num_gpu 0")
        return None
    if gpu_milli > _MILLI or gpu_milli == 0:
        raise csvrows.RowError(f"gpu_milli {gpu_milli} outside 1..1000 on a GPU pod")
    if gpu_milli == _MILLI:
        return None
    if num_gpus > 1:
        # The trace only shares single GPUs; a fraction of each of several GPUs has
        # no meaning in FGD's model, so it is bad input rather than a guess.
        raise csvrows.RowError(f"gpu_milli {gpu_milli} < 1000 with num_gpu {num_gpus} > 1")
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
            f"negative duration {end - start:g} (deletion_time {end:g} < scheduled_time {start:g})"
        )
    return end - start
