"""``slicebox pool`` and ``slicebox plan``: what exists, and what a job would get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from slicebox.cli.common import (
    EXIT_RUNTIME,
    JSON_OPTION,
    POOL_OPTION,
    console,
    errors,
    fail,
    literal,
    load_pool_or_discover,
    print_json,
    state_dir,
)


def pool(ctx: typer.Context, pool_file: Path | None = POOL_OPTION,
         backend: str = typer.Option("local", "--backend",
                                     help="local (this machine or --pool) or ray (the nodes "
                                          "of the Ray cluster at --address)."),
         address: str | None = typer.Option(None, "--address", metavar="auto|HOST:PORT",
                                            help="The Ray cluster (with --backend ray)."),
         as_json: bool = JSON_OPTION) -> None:
    """Show the pool: nodes, cores by NUMA node, memory, GPUs (MIG), volumes."""
    from slicebox.pool.cpulist import format_cpulist
    from slicebox.pool.files import pool_to_dict

    if backend == "ray":
        if pool_file is not None:
            raise fail("--pool: with --backend ray the pool is what the cluster's nodes "
                       "report; leave --pool out")
        from slicebox.controller.backend_choice import ray_pool

        the_pool = ray_pool(state_dir(ctx), address or "auto")
    elif backend == "local":
        if address is not None:
            raise fail("--address: only with --backend ray")
        the_pool = load_pool_or_discover(pool_file, state_dir(ctx))
    else:
        raise fail(f"--backend: {literal(backend)!r} is not a backend (local, ray)")
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
                      f"{volume.read_mbps:,.0f} MB/s)", markup=False)
    if pool_file is None and backend == "local":  # how jobs here are confined, measured now
        from slicebox.backends.isolation import detect

        level = detect()
        why = f" [dim]({literal('; '.join(level.notes))})[/dim]" if level.notes else ""
        console.print(f"isolation: {literal(level.describe())}{why}", highlight=False)


def plan(ctx: typer.Context,
         job_files: list[Path] = typer.Argument(..., help="Job specs, placed in this order."),
         pool_file: Path | None = POOL_OPTION,
         count: int = typer.Option(1, "--count", min=1, max=10_000,
                                   help="Place this many copies of each job."),
         allow_mig_reconfigure: bool = typer.Option(
             False, "--allow-mig-reconfigure",
             help="Carry out the MIG re-layout the plan shows, through NVML, on this "
                  "machine's cards that run nothing (a card a job holds is refused)."),
         as_json: bool = JSON_OPTION) -> None:
    """Dry run: the composition each job would get on an idle pool. Changes nothing.

    When a job needs a MIG profile the current layouts cannot give, the plan also shows
    the MIG re-layout that would serve it: the cards to drain and the NVML steps. Only
    --allow-mig-reconfigure carries it out (see docs/mig.md).
    """
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
    never = [job_id for job_id, why in result.waiting.items() if why.never]
    held = _held_compositions(ctx) if allow_mig_reconfigure else ()
    relayout = _mig_relayout(the_pool, views, result, held)
    if as_json:
        doc: dict[str, Any] = {"start": [composition_to_json(c) for c in result.start],
               "waiting": {job_id: dataclasses.asdict(why)
                           for job_id, why in result.waiting.items()}}
        if relayout is not None:
            doc["mig_relayout"] = relayout.to_json()
    else:
        _plan_table(the_pool, result)
        if relayout is not None:
            _relayout_text(relayout, executes=allow_mig_reconfigure)
    if relayout is not None and allow_mig_reconfigure and relayout.plan.changes:
        done = _execute_relayout(the_pool, relayout, held)
        if as_json:
            doc["mig_relayout"]["executed"] = done
    elif allow_mig_reconfigure and not as_json:
        console.print("nothing to re-lay out: --allow-mig-reconfigure did nothing",
                      highlight=False)
    if as_json:
        print_json(doc)
    if never:  # a job this pool can never run: the plan failed (exit 1), the output says why
        raise typer.Exit(EXIT_RUNTIME)


class _Relayout:
    """A re-layout plan as ``plan`` shows it: the plan, its NVML steps, and which of the
    jobs would start on the pool once it is done."""

    def __init__(self, plan, steps, starts_after: list[str]):
        self.plan = plan
        self.steps = steps
        self.starts_after = starts_after

    def to_json(self) -> dict:
        plan = self.plan
        return {
            "demand": dict(plan.demand), "served_before": plan.served_before,
            "served_after": plan.served_after, "drain": list(plan.drain),
            "cards": [{"card": c.card.name, "node": c.card.node, "device": c.card.device,
                       "kind": c.card.kind,
                       "before": [str(p) for p in c.card.instances],
                       "after": [str(p) for p in c.target],
                       "destroy": [str(p) for p in c.destroy],
                       "create": [str(p) for p in c.create]} for c in plan.changes],
            "steps": [{"card": s.card, "action": s.action.value, "instance": str(s.placement),
                       "profile": s.placement.profile, "start": s.placement.start,
                       "size": s.size, "gpu_instance_profile": s.gpu_profile,
                       "compute_instance_profile": s.compute_profile,
                       "nvml": list(s.nvml_calls)} for s in self.steps],
            "shortfalls": [{"profile": s.profile, "wanted": s.wanted,
                            "available": s.available, "reason": s.reason}
                           for s in plan.shortfalls],
            "would_start_after": self.starts_after,
        }


def _mig_relayout(the_pool, views, result, held) -> _Relayout | None:
    """The re-layout that serves the MIG jobs of the plan, when one of them would wait
    for room (not when it can never run) or would start on an instance that does not exist
    yet (free room: the plan shows the creation, which the live controller needs first).
    None otherwise."""
    from slicebox.placement import dry_run
    from slicebox.placement.search import PLANNED_MIG_PREFIX
    from slicebox.pool.mig_layout import apply_plan, cards_of, mig_demand, plan_relayout
    from slicebox.pool.mig_steps import relayout_steps

    waiting = [v for v in views if v.demand.mig is not None and v.id in result.waiting
               and not result.waiting[v.id].never]
    to_create = [c for c in result.start
                 if any(s.uuid.startswith(PLANNED_MIG_PREFIX) for s in c.slices)]
    if not waiting and not to_create:
        return None
    # Every MIG job of the plan counts: the plan places on an idle pool, so the jobs that
    # would start need their instances as much as the ones that would wait.
    try:
        plan = plan_relayout(cards_of(the_pool, held),
                             mig_demand(v.demand.mig for v in views))
    except ValueError as exc:
        raise fail(f"--pool: {exc}", EXIT_RUNTIME) from None
    mig_views = [v for v in views if v.demand.mig is not None]
    after = dry_run(apply_plan(the_pool, plan), mig_views) if plan.changes else None
    starts = [c.job_id for c in after.start] if after is not None else []
    return _Relayout(plan, relayout_steps(plan), starts)


def _relayout_text(relayout: _Relayout, executes: bool) -> None:
    plan = relayout.plan
    if not plan.changes:
        console.print("[yellow]MIG re-layout: none helps.[/]", highlight=False)
    else:
        how = ("carried out now (--allow-mig-reconfigure)" if executes
               else "not carried out; --allow-mig-reconfigure does it on idle cards")
        cards = literal(", ".join(plan.drain))
        what = (f"create {plan.created} instance(s) on {cards}" if plan.creates_only
                else f"drain {cards}")
        console.print(f"[bold]MIG re-layout[/] ({how}): {what}; "
                      f"serves {plan.served_after} of {sum(n for _, n in plan.demand)} MIG "
                      f"instances wanted (now {plan.served_before})", highlight=False)
        for change in plan.changes:
            console.print(f"  {literal(change.describe())}", highlight=False)
        for i, step in enumerate(relayout.steps, 1):
            console.print(f"  {i:>2}. {literal(step.describe())}", highlight=False)
        console.print(f"  after it, {len(relayout.starts_after)} MIG job(s) would start",
                      highlight=False)
        if plan.creates_only:
            console.print("  (the plan above places MIG jobs in free room; `slicebox up` "
                          "starts a job only on an instance that exists)", highlight=False)
    for short in plan.shortfalls:
        console.print(f"[yellow]MIG re-layout cannot serve[/] {literal(short)}",
                      highlight=False)


def _held_compositions(ctx: typer.Context) -> tuple:
    """What running jobs hold now, from the store (their cards are never re-laid out)."""
    from slicebox.cli.jobs_cmds import open_store
    from slicebox.snapshot import JobState

    store = open_store(ctx)
    try:
        return tuple(r.composition for r in store.jobs([JobState.STAGING, JobState.RUNNING])
                     if r.composition is not None)
    finally:
        store.close()


def _execute_relayout(the_pool, relayout: _Relayout, held) -> list[dict]:
    import socket

    from slicebox.backends.mig_reconfigure import execute_relayout, load_nvml

    names = [n.name for n in the_pool.nodes]
    here = names[0] if len(names) == 1 else socket.gethostname()
    nvml = load_nvml()
    if nvml is None:
        raise fail("--allow-mig-reconfigure: NVML is not installed here "
                   "(pip install nvidia-ml-py)", EXIT_RUNTIME)
    running: dict[tuple[str, int], list[str]] = {}
    for comp in held:
        for part in comp.parts:
            for s in part.slices:
                running.setdefault((s.node, s.device), []).append(comp.job_id)
    result = execute_relayout(relayout.plan, nvml, allow=True, node=here, running=running)
    errors.print(f"MIG re-layout done on {literal(', '.join(result.cards))}: "
                 f"{len(result.done)} steps", highlight=False)
    return [{"card": e.step.card, "action": e.step.action.value,
             "instance": str(e.step.placement), "uuid": e.uuid} for e in result.done]


def _plan_table(the_pool, result) -> None:
    table = Table(title=f"plan on {literal(the_pool.name)}")
    for column in ("job", "node", "slices", "cores", "NUMA", "memory"):
        table.add_column(column)
    for comp in result.start:
        for i, part in enumerate(comp.parts):  # a gang: one row per node
            table.add_row(Text(comp.job_id) if i == 0 else "", part.node,
                          "\n".join(s.describe() for s in part.slices) or "no GPU",
                          _ranges(part.cores), ",".join(map(str, part.numa_nodes)),
                          f"{part.memory_gib:g} GiB")
    console.print(table)
    for job_id, reason in result.waiting.items():
        console.print(f"[yellow]{literal(job_id)} would wait:[/] {literal(reason)}",
                      highlight=False)


def _ranges(cores: tuple[int, ...]) -> str:
    from slicebox.pool.cpulist import format_cpulist

    return format_cpulist(cores)
