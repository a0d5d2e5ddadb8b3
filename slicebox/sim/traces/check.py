"""One trace file through the real reading path, and an independent range check.

`check_trace_file` is what a fuzzer (``benchmarks/fuzz.py``) calls: the same reading
`slicebox simulate --trace FILE` does (format guess, guarded open, size and row limits,
the format's reader), and for an Alibaba node list the reading `--pool nodes.csv` does.
Bad input raises `TraceError` and nothing else; any other exception is a bug.

`out_of_range` re-checks what a reader accepted against `limits`, written separately
from the readers so that a reader that lets a value through is caught, not trusted.
"""

from __future__ import annotations

import math
import os

from slicebox.sim.traces import alibaba, formats, limits, model

NODE_FORMATS = ("alibaba-nodes", "nodes")


def check_trace_file(
    path: str | os.PathLike[str], format: str | None = None
) -> model.TraceReadResult | model.NodeReadResult:
    """Read one trace file as the simulator would; raise only `TraceError`.

    `format`: a job-trace format name (see `formats.FORMATS`), `alibaba-nodes` for a
    node list, or None to guess (an `openb_node_list_*` file is read as a node list).
    """
    name = os.fspath(path)
    is_node_list = os.path.basename(name).lower().startswith("openb_node_list")
    if (format is not None and format.lower() in NODE_FORMATS) or (
        format is None and is_node_list
    ):
        return alibaba.read_alibaba_nodes(name)
    return formats.read_trace(name, format)


def out_of_range(record: model.TraceJob | model.TraceNode) -> str | None:
    """The first field of `record` outside what the simulator accepts, described; or
    None when every value is finite and within `limits`."""
    if isinstance(record, model.TraceNode):
        return _node_out_of_range(record)
    job = record
    numbers: dict[str, float | None] = {
        "arrival": job.arrival, "gpu_fraction": job.gpu_fraction, "cpus": job.cpus,
        "memory_gib": job.memory_gib, "duration": job.duration, "total_work": job.total_work,
        "priority_weight": job.priority_weight, "slo": job.slo,
    }
    for field, value in numbers.items():
        if value is not None and not math.isfinite(value):
            return f"{field} is {value!r}"
    checks = (
        ("arrival", 0 <= job.arrival <= limits.MAX_SECONDS),
        ("num_gpus", 0 <= job.num_gpus <= limits.MAX_JOB_GPUS),
        ("gpu_fraction", job.gpu_fraction is None or 0 < job.gpu_fraction < 1),
        ("cpus", job.cpus is None or 0 <= job.cpus <= limits.MAX_CPU_MILLI / 1000),
        ("memory_gib", job.memory_gib is None
         or 0 <= job.memory_gib <= limits.MAX_MEMORY_MIB / 1024),
        ("duration", job.duration is None or 0 <= job.duration <= limits.MAX_SECONDS),
        ("total_work", job.total_work is None or 0 < job.total_work <= limits.MAX_TOTAL_STEPS),
        ("batch_size", job.batch_size is None or 1 <= job.batch_size <= limits.MAX_BATCH_SIZE),
        ("priority_weight", 0 < job.priority_weight <= limits.MAX_PRIORITY_WEIGHT),
        ("slo", job.slo is None or 0 < job.slo <= limits.MAX_SECONDS),
        ("id", _name_ok(job.id)),
        ("workload", _name_ok(job.workload)),
        ("group", job.group is None or _name_ok(job.group)),
    )
    return _first_failed(checks, job)


def _node_out_of_range(node: model.TraceNode) -> str | None:
    checks = (
        ("cpus", math.isfinite(node.cpus) and 0 <= node.cpus <= limits.MAX_CPU_MILLI / 1000),
        ("memory_gib", math.isfinite(node.memory_gib)
         and 0 <= node.memory_gib <= limits.MAX_MEMORY_MIB / 1024),
        ("gpus", 0 <= node.gpus <= limits.MAX_NODE_GPUS),
        ("gpu_model", (node.gpu_model is None) == (node.gpus == 0)),
        ("name", _name_ok(node.name)),
    )
    return _first_failed(checks, node)


def _first_failed(
    checks: tuple[tuple[str, bool], ...], record: model.TraceJob | model.TraceNode
) -> str | None:
    for field, ok in checks:
        if not ok:
            return f"{field} is {getattr(record, field)!r}"
    return None


def _name_ok(text: str) -> bool:
    return 0 < len(text) <= limits.MAX_NAME_CHARS and text.isprintable()
