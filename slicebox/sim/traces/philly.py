"""Microsoft Philly GPU-cluster jobs (`philly.csv`, as shipped by Pollux and Sia).

Columns `timestamp,duration,num_gpus,gpu_time,cluster`: submission time, seconds the
job ran on its GPUs, the GPUs it had, their product, and its virtual cluster.
"""

from __future__ import annotations

import datetime
import os

from slicebox.sim.traces import csvrows, limits, model

REQUIRED_COLUMNS = ("timestamp", "duration", "num_gpus")
WORKLOAD = "philly"
# Naive subtraction is the fast path for the 82k naive timestamps of the real trace.
_NAIVE_EPOCH = datetime.datetime(1970, 1, 1)


def read_philly(
    path: str | os.PathLike[str], skip_bad_lines: bool = False
) -> model.TraceReadResult:
    """Read a Philly trace; jobs come back in arrival order.

    `arrival` counts from the earliest timestamp in the file (the file is not in
    submission order). `duration` is the job's run time on its own GPUs, which is the
    only speed information Philly gives. Job ids are `philly-<row>` (0-based data row in
    file order), so they stay the same whether or not bad lines are skipped.
    """
    name = os.fspath(path)
    errors = csvrows.LineErrors(name, skip_bad_lines)
    with csvrows.open_table(name, REQUIRED_COLUMNS, errors) as table:
        at = table.columns
        i_time, i_duration, i_gpus = at["timestamp"], at["duration"], at["num_gpus"]
        i_cluster = at.get("cluster")
        clusters: dict[str, str] = {}

        # Rows become plain tuples first: the earliest timestamp is only known at the
        # end, and building each frozen job once (not once absolute, once shifted)
        # halves the cost on 82k rows.
        def convert(row: csvrows.Row) -> tuple[int, float, float, int, str | None]:
            fields = row.fields
            duration = csvrows.non_negative(
                csvrows.parse_float(fields[i_duration], "duration", high=limits.MAX_SECONDS),
                "duration",
            )
            num_gpus = csvrows.parse_int(fields[i_gpus], "num_gpus", high=limits.MAX_JOB_GPUS)
            if num_gpus < 1:
                raise csvrows.RowError(
                    f"column 'num_gpus': a Philly job has at least 1 GPU, got {num_gpus}",
                    "num_gpus",
                )
            group = None
            if i_cluster is not None:
                raw = fields[i_cluster]
                group = clusters.get(raw)  # 15 names repeated 82k times: check each once
                if group is None and raw.strip():
                    group = clusters[raw] = csvrows.parse_name(raw, "cluster")
            return (row.line, _parse_timestamp(fields[i_time]), duration, num_gpus, group)

        rows = csvrows.convert_rows(table.rows, convert, errors)
    start = min((row[1] for row in rows), default=0.0)
    # Each timestamp is in range alone; the span from the earliest one is checked here,
    # where the earliest is known (a skipped row drops out before its span is measured).
    if rows and max(row[1] for row in rows) - start > limits.MAX_SECONDS:
        kept = []
        for row in rows:
            if row[1] - start > limits.MAX_SECONDS:
                errors.add(row[0], f"column 'timestamp': {row[1] - start:g} s after the "
                           f"trace's first job, above the maximum {limits.MAX_SECONDS:g} s",
                           "timestamp")
                continue
            kept.append(row)
        rows = kept
    jobs = [
        model.TraceJob(
            # Numbered by data row (the header is line 1) so an id does not move
            # when earlier bad lines are skipped.
            id=f"philly-{line - 2:05d}",
            arrival=timestamp - start,
            num_gpus=num_gpus,
            workload=WORKLOAD,
            duration=duration,
            group=group,
        )
        for line, timestamp, duration, num_gpus, group in rows
    ]
    jobs.sort(key=_arrival)
    return model.TraceReadResult(name, jobs, errors.skipped, tuple(errors.first))


def _arrival(job: model.TraceJob) -> float:
    return job.arrival


def _parse_timestamp(text: str) -> float:
    """Seconds since the Unix epoch, from 'YYYY-MM-DD HH:MM:SS' or a plain number.

    The wall-clock strings are taken as UTC: only differences matter, and a local
    time zone would bend them at daylight-saving changes. A plain number must be finite
    and within 0..MAX_EPOCH_SECONDS (a NaN once made the simulator loop forever).
    """
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        try:
            float(text)
        except ValueError:
            raise csvrows.RowError(
                f"column 'timestamp': {csvrows.shorten(text)} is neither "
                "'YYYY-MM-DD HH:MM:SS' nor seconds",
                "timestamp",
            ) from None
        return csvrows.parse_float(text, "timestamp", low=0.0, high=limits.MAX_EPOCH_SECONDS)
    if moment.tzinfo is None:
        return (moment - _NAIVE_EPOCH).total_seconds()
    return moment.timestamp()
