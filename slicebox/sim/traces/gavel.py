"""Gavel's trace format (`*.trace`): one job a line, 10 tab-separated fields.

`job_type, command, working_directory, num_steps_arg, needs_data_dir, total_steps,
scale_factor, priority_weight, SLO, arrival_time`. A job's length is `total_steps`
divided by its steps/s on the GPU type it runs on
(`slicebox.sim.workload_models.GavelThroughputs`).
"""

from __future__ import annotations

import os
import re

from slicebox.sim.traces import csvrows, model

FIELDS = (
    "job_type",
    "command",
    "working_directory",
    "num_steps_arg",
    "needs_data_dir",
    "total_steps",
    "scale_factor",
    "priority_weight",
    "SLO",
    "arrival_time",
)
_BATCH_SIZE = re.compile(r"\(batch size (\d+)\)")


def read_gavel(path: str | os.PathLike[str], skip_bad_lines: bool = False) -> model.TraceReadResult:
    """Read a Gavel trace; jobs come back in arrival order.

    `workload` is the job type as Gavel's throughput file names it ('ResNet-50 (batch
    size 64)'), `num_gpus` its scale factor, `total_work` its total steps, and
    `batch_size` the one in its name (None for 'A3C', 'CycleGAN'). An SLO of -1 is
    Gavel's "none". Ids are `<file stem>-<line>`.
    """
    name = os.fspath(path)
    stem = os.path.splitext(os.path.basename(name))[0]
    errors = csvrows.LineErrors(name, skip_bad_lines)
    with csvrows.open_headerless(name, len(FIELDS), errors, delimiter="\t") as rows:

        def convert(row: csvrows.Row) -> model.TraceJob:
            fields = row.fields
            job_type = fields[0].strip()
            if not job_type:
                raise csvrows.RowError("field 'job_type' is empty")
            total_steps = csvrows.parse_float(fields[5], "total_steps")
            if total_steps <= 0:
                raise csvrows.RowError(f"field 'total_steps': needs > 0, got {total_steps:g}")
            scale_factor = csvrows.parse_int(fields[6], "scale_factor")
            if scale_factor < 1:
                raise csvrows.RowError(f"field 'scale_factor': needs >= 1, got {scale_factor}")
            priority = csvrows.parse_float(fields[7], "priority_weight")
            if priority <= 0:
                raise csvrows.RowError(f"field 'priority_weight': needs > 0, got {priority:g}")
            slo = csvrows.parse_float(fields[8], "SLO")
            arrival = csvrows.parse_float(fields[9], "arrival_time")
            batch = _BATCH_SIZE.search(job_type)
            return model.TraceJob(
                id=f"{stem}-{row.line}",
                arrival=csvrows.non_negative(arrival, "arrival_time"),
                num_gpus=scale_factor,
                workload=job_type,
                total_work=total_steps,
                batch_size=int(batch.group(1)) if batch else None,
                priority_weight=priority,
                slo=slo if slo > 0 else None,
            )

        jobs = csvrows.convert_rows(rows, convert, errors)
    jobs.sort(key=lambda job: job.arrival)
    return model.TraceReadResult(name, jobs, errors.skipped, tuple(errors.first))
