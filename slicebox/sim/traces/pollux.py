"""The Pollux/Sia workloads (`philly-workload-*.csv`): 160 jobs sampled from Philly.

Columns `name,time,application,num_replicas,batch_size`. A job's length is not in the
file: it trains its application for the application's `max_epochs`, at the speed the
Sia profiles give for the GPUs it gets (`slicebox.sim.workload_models.SiaProfiles`).
"""

from __future__ import annotations

import os

from slicebox.sim.traces import csvrows, limits, model

REQUIRED_COLUMNS = ("name", "time", "application", "num_replicas", "batch_size")


def read_pollux(
    path: str | os.PathLike[str], skip_bad_lines: bool = False
) -> model.TraceReadResult:
    """Read a Pollux/Sia workload; jobs come back in arrival order.

    `workload` is the application ('cifar10', 'bert', ...), `num_gpus` the replicas
    the job asked for, and `batch_size` its global batch size. `arrival` is the
    file's `time` (already seconds since the workload's start).
    """
    name = os.fspath(path)
    errors = csvrows.LineErrors(name, skip_bad_lines)
    with csvrows.open_table(name, REQUIRED_COLUMNS, errors) as table:
        at = table.columns
        i_name, i_time, i_app = at["name"], at["time"], at["application"]
        i_replicas, i_batch = at["num_replicas"], at["batch_size"]
        seen: set[str] = set()

        def convert(row: csvrows.Row) -> model.TraceJob:
            fields = row.fields
            job_name = csvrows.parse_name(fields[i_name], "name")
            if job_name in seen:
                raise csvrows.RowError(f"duplicate name {job_name!r}", "name")
            application = csvrows.parse_name(fields[i_app], "application")
            replicas = csvrows.parse_int(
                fields[i_replicas], "num_replicas", high=limits.MAX_JOB_GPUS
            )
            if replicas < 1:
                raise csvrows.RowError(
                    f"column 'num_replicas': needs >= 1, got {replicas}", "num_replicas"
                )
            batch_size = csvrows.parse_int(
                fields[i_batch], "batch_size", high=limits.MAX_BATCH_SIZE
            )
            if batch_size < 1:
                raise csvrows.RowError(
                    f"column 'batch_size': needs >= 1, got {batch_size}", "batch_size"
                )
            time = csvrows.parse_float(fields[i_time], "time", high=limits.MAX_SECONDS)
            job = model.TraceJob(
                id=job_name,
                arrival=csvrows.non_negative(time, "time"),
                num_gpus=replicas,
                workload=application,
                batch_size=batch_size,
            )
            seen.add(job_name)  # only once the row is good, so a skipped row frees it
            return job

        jobs = csvrows.convert_rows(table.rows, convert, errors)
    jobs.sort(key=lambda job: job.arrival)
    return model.TraceReadResult(name, jobs, errors.skipped, tuple(errors.first))
