"""``slicebox pool`` and ``slicebox plan``: what exists, and what a job would get."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from slicebox.cli.common import (
    JSON_OPTION,
    POOL_OPTION,
    console,
    fail,
    load_pool_or_discover,
    print_json,
    state_dir,
)


def pool(ctx: typer.Context, pool_file: Path | None = POOL_OPTION,
         as_json: bool = JSON_OPTION) -> None:
    """Show the pool: nodes, cores by NUMA node, memory, GPUs (MIG), volumes."""
    from slicebox.pool.cpulist import format_cpulist
    from slicebox.pool.files import pool_to_dict

    the_pool = load_pool_or_discover(pool_file, state_dir(ctx))
    if as_json:
        print_json(pool_to_dict(the_pool))
        return
    table = Table(title=f"pool {the_pool.name}: {the_pool.total_gpus} GPUs, "
                        f"{the_pool.total_cores} cores")
    for column in ("node", "cores (NUMA: list)", "memory", "GPUs", "volumes"):
        table.add_column(column)
    for node in the_pool.nodes:
        cores = "\n".join(f"{numa}: {format_cpulist(c)}" for numa, c in node.cores_by_numa)
        gpus = "\n".join(
            f"gpu{d.index} {d.kind.name} {d.memory:g} GiB numa {d.numa_node}"
            + (" MIG" + "".join(f" {m.profile}@{m.start}" for m in d.mig_instances)
               if d.mig_enabled else "")
            for d in node.devices) or "-"
        volumes = "\n".join(f"{v.name} {v.path} {v.tier.value} {v.capacity_gib:,.0f} GiB "
                            f"{v.read_mbps:,.0f} MB/s" for v in node.volumes) or "-"
        table.add_row(node.name, cores, f"{node.memory_gib:,.1f} GiB", gpus, volumes)
    console.print(table)
    for volume in the_pool.shared_volumes:
        console.print(f"shared volume {volume.name}: {volume.path} ({volume.tier.value}, "
                      f"{volume.read_mbps:,.0f} MB/s)")
    if pool_file is None:  # how jobs on this machine are confined, measured now
        from slicebox.backends.isolation import detect

        level = detect()
        why = f" [dim]({'; '.join(level.notes)})[/dim]" if level.notes else ""
        console.print(f"isolation: {level.describe()}{why}", highlight=False)


def plan(ctx: typer.Context,
         job_files: list[Path] = typer.Argument(..., help="Job specs, placed in this order."),
         pool_file: Path | None = POOL_OPTION,
         count: int = typer.Option(1, "--count", min=1, max=10_000,
                                   help="Place this many copies of each job."),
         as_json: bool = JSON_OPTION) -> None:
    """Dry run: the composition each job would get on an idle pool. Changes nothing."""
    import dataclasses

    from slicebox.placement import dry_run
    from slicebox.snapshot import JobView
    from slicebox.spec import Demand, SpecError, load_spec
    from slicebox.store.codec import composition_to_json

    the_pool = load_pool_or_discover(pool_file, state_dir(ctx))
    views: list[JobView] = []
    for path in job_files:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            raise fail(str(exc)) from None
        copies = count * sum(1 for p in job_files if p == path)
        for _ in range(count):
            job_id = spec.name if copies == 1 else f"{spec.name}#{len(views) + 1}"
            views.append(JobView(job_id, Demand.from_spec(spec), submitted_at=len(views),
                                 workload=spec.workload_class, precision=spec.precision,
                                 priority=spec.priority))
    result = dry_run(the_pool, views)
    if as_json:
        print_json({"start": [composition_to_json(c) for c in result.start],
                    "waiting": {job_id: dataclasses.asdict(why)
                                for job_id, why in result.waiting.items()}})
        return
    table = Table(title=f"plan on {the_pool.name}")
    for column in ("job", "node", "slices", "cores", "NUMA", "memory"):
        table.add_column(column)
    for comp in result.start:
        for i, part in enumerate(comp.parts):  # a gang: one row per node
            table.add_row(comp.job_id if i == 0 else "", part.node,
                          "\n".join(s.describe() for s in part.slices) or "no GPU",
                          _ranges(part.cores), ",".join(map(str, part.numa_nodes)),
                          f"{part.memory_gib:g} GiB")
    console.print(table)
    for job_id, reason in result.waiting.items():
        console.print(f"[yellow]{job_id} would wait:[/] {reason}", highlight=False)


def _ranges(cores: tuple[int, ...]) -> str:
    from slicebox.pool.cpulist import format_cpulist

    return format_cpulist(cores)
