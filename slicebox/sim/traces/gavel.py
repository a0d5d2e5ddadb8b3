"""Gavel's trace format (`*.trace`): one job a line, 10 tab-separated fields.

`job_type, command, working_directory, num_steps_arg, needs_data_dir, total_steps,
scale_factor, priority_weight, SLO, arrival_time`. A job's length is `total_steps`
divided by its steps/s on the GPU type it runs on
(`slicebox.sim.workload_models.GavelThroughputs`).
"""

from __future__ import annotations

import os
import re

from slicebox.sim.traces import csvrows, limits, model

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
# Bounded digits: a 5,000-digit batch size must not reach int()'s digit limit.
_BATCH_SIZE = re.compile(r"\(batch size ([0-9]{1,12})\)")


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
            job_type = csvrows.parse_name(fields[0], "job_type")
            total_steps = csvrows.parse_float(
                fields[5], "total_steps", high=limits.MAX_TOTAL_STEPS
            )
            if total_steps <= 0:
                raise csvrows.RowError(
                    f"field 'total_steps': needs > 0, got {total_steps:g}", "total_steps"
                )
            scale_factor = csvrows.parse_int(fields[6], "scale_factor", high=limits.MAX_JOB_GPUS)
            if scale_factor < 1:
                raise csvrows.RowError(
                    f"field 'scale_factor': needs >= 1, got {scale_factor}", "scale_factor"
                )
            priority = csvrows.parse_float(
                fields[7], "priority_weight", high=limits.MAX_PRIORITY_WEIGHT
            )
            if priority <= 0:
                raise csvrows.RowError(
                    f"field 'priority_weight': needs > 0, got {priority:g}", "priority_weight"
                )
            # -1 (or any value <= 0) is Gavel's "no SLO".
            slo = csvrows.parse_float(fields[8], "SLO", high=limits.MAX_SECONDS)
            arrival = csvrows.parse_float(fields[9], "arrival_time", high=limits.MAX_SECONDS)
            batch = _BATCH_SIZE.search(job_type)
            batch_size = int(batch.group(1)) if batch else None
            if batch_size is not None and not 1 <= batch_size <= limits.MAX_BATCH_SIZE:
                raise csvrows.RowError(
                    f"field 'job_type': batch size {batch_size} outside "
                    f"1..{limits.MAX_BATCH_SIZE}",
                    "job_type",
                )
            return model.TraceJob(
                id=f"{stem}-{row.line}",
                arrival=csvrows.non_negative(arrival, "arrival_time"),
                num_gpus=scale_factor,
                workload=job_type,
                total_work=total_steps,
                batch_size=batch_size,
                priority_weight=priority,
                slo=slo if slo > 0 else None,
            )

        jobs = csvrows.convert_rows(rows, convert, errors)
    jobs.sort(key=lambda job: job.arrival)
    return model.TraceReadResult(name, jobs, errors.skipped, tuple(errors.first))
