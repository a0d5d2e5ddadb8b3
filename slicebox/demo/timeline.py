"""Who held which core (or GPU, or slice) when, who waited, and where jobs were resized.

Built from the store's composition history (one row per attempt) and its events, so the
picture can be rebuilt from ``report.json`` or from any store. ``build`` returns the data
the figure draws (rows, bars, waits, markers): tests assert on that, ``plot`` only draws it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slicebox.pool.model import Pool
from slicebox.pool.slices import Slice
from slicebox.store.records import CompositionRecord, EventRecord, JobRecord

MAX_CORE_ROWS = 48  # a bigger pool shows only the cores some job held (else unreadable)
SHORTEST_WAIT_S = 0.5  # the picture leaves out waits shorter than a controller round or two
VISIBLE_SHARE = 1 / 150  # ... and those narrower than this share of the x-axis (~5 px)
CHAR_SHARE = 0.0095  # of the x-axis, one character of 8-point text (9-inch figure)
ARROWS = {"shrink": "▼", "grow": "▲"}  # a resize's marker; "■" for a plain preemption
# matplotlib's tab10 without its grey (grey reads as "idle"); the terminal uses them too
JOB_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
               "#e377c2", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Attempt:
    """One attempt of one job on its composition (a row of the store's compositions table).

    Times are seconds since the report's origin; ``started_at``/``ended_at`` are the
    store's own Unix times. ``ended_at`` is None while the attempt still runs."""

    job_id: str
    job: str
    attempt: int
    node: str
    cores: tuple[int, ...]
    gpus: tuple[str, ...]
    started_at: float
    ended_at: float | None
    start_s: float
    end_s: float | None


@dataclass(frozen=True)
class Wait:
    """A span a job spent waiting for resources: ``queued`` (submitted → first start) or
    ``requeued`` (preempted or checkpointed for a resize → restarted)."""

    job_id: str
    job: str
    kind: str
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Bar:
    """One job holding one row (a core or a GPU slice) from ``start_s`` to ``end_s``."""

    row: str
    job: str
    attempt: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Stopping:
    """An attempt asked to stop (to checkpoint, for a resize or a preemption) until its
    process was gone: the price of a resize, drawn over the attempt's bars."""

    job_id: str
    job: str
    attempt: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Marker:
    """Where a job was asked to give up its attempt (or, without such a request, where the
    attempt ended) and the next began on a different size (``shrink``, ``grow``) or on
    the same size (``preempted``)."""

    job_id: str
    job: str
    kind: str
    time_s: float
    cores_before: int
    cores_after: int

    @property
    def label(self) -> str:
        if self.kind == "preempted":
            return f"{self.job} preempted"
        return f"{self.job} {self.kind}s {self.cores_before}→{self.cores_after} cores"


@dataclass(frozen=True)
class Timeline:
    origin: float  # Unix time of 0 s: the first submission
    end_s: float
    jobs: tuple[str, ...]  # names, in submission order (the colour order)
    rows: tuple[str, ...]  # resource rows, top to bottom
    attempts: tuple[Attempt, ...]
    bars: tuple[Bar, ...]
    waits: tuple[Wait, ...]  # every wait, however short (report.json has them all)
    markers: tuple[Marker, ...]
    stops: tuple[Stopping, ...] = ()

    def wait_bars(self) -> tuple[Wait, ...]:
        """The waits the picture draws: those long enough to see (at least
        ``SHORTEST_WAIT_S`` and ``VISIBLE_SHARE`` of the time shown)."""
        shortest = max(SHORTEST_WAIT_S, VISIBLE_SHARE * self.end_s)
        return tuple(w for w in self.waits if w.seconds >= shortest)

    def waits_of(self, job_id: str) -> list[Wait]:
        return [w for w in self.waits if w.job_id == job_id]

    def attempts_of(self, job_id: str) -> list[Attempt]:
        return [a for a in self.attempts if a.job_id == job_id]


def _slice_row(s: Slice) -> str:
    if s.mig_profile:
        return f"{s.node} gpu{s.device} {s.mig_profile}@{s.mig_start}"
    return f"{s.node} gpu{s.device}"


def _core_row(node: str, core: int, nodes: int) -> str:
    return f"core {core}" if nodes == 1 else f"{node} core {core}"


def attempts(history: Iterable[CompositionRecord], names: dict[str, str],
             origin: float) -> list[Attempt]:
    out = []
    for rec in history:
        comp = rec.composition
        cores = tuple(c for part in comp.parts for c in part.cores)
        out.append(Attempt(
            rec.job_id, names.get(rec.job_id, rec.job_id), rec.attempt, rec.node, cores,
            tuple(_slice_row(s) for s in comp.slices), rec.started_at, rec.ended_at,
            rec.started_at - origin,
            None if rec.ended_at is None else rec.ended_at - origin))
    return out


def waits(jobs: Sequence[JobRecord], tried: Sequence[Attempt], events: Iterable[EventRecord],
          origin: float, now: float) -> list[Wait]:
    """Each job's waits: submitted → first start, then each preemption → the next start.

    A requeue's wait starts when the job was preempted (its ``preempted`` event) or, if
    the store has none, when the attempt ended. A job still waiting waits until ``now``."""
    preempted: dict[str, list[float]] = {}
    for e in events:
        if e.kind == "preempted":
            preempted.setdefault(e.job_id, []).append(e.time)
    by_job: dict[str, list[Attempt]] = {}
    for a in tried:
        by_job.setdefault(a.job_id, []).append(a)
    out: list[Wait] = []
    for job in jobs:
        mine = sorted(by_job.get(job.id, []), key=lambda a: a.started_at)
        first = mine[0].started_at if mine else (None if job.state.terminal else now)
        if first is not None and first > job.submitted_at:
            out.append(Wait(job.id, job.name, "queued", job.submitted_at - origin,
                            first - origin))
        for i, before in enumerate(mine):
            after = mine[i + 1] if i + 1 < len(mine) else None
            if before.ended_at is None:
                continue
            restarted = after.started_at if after is not None else (
                None if job.state.terminal else now)
            if restarted is None:
                continue
            stopped = min((t for t in preempted.get(job.id, [])
                           if before.started_at <= t <= restarted), default=before.ended_at)
            if restarted > stopped:
                out.append(Wait(job.id, job.name, "requeued", stopped - origin,
                                restarted - origin))
    return out


def stops(tried: Sequence[Attempt], events: Iterable[EventRecord]) -> list[Stopping]:
    """For each ended attempt that was asked to stop: from the (last) request to the end."""
    asked: dict[str, list[float]] = {}
    for e in events:
        if e.kind == "stopping":
            asked.setdefault(e.job_id, []).append(e.time)
    out = []
    for a in tried:
        if a.ended_at is None or a.end_s is None:
            continue
        within = [t for t in asked.get(a.job_id, []) if a.started_at <= t <= a.ended_at]
        if within:
            start = max(within)
            out.append(Stopping(a.job_id, a.job, a.attempt, a.start_s + (start - a.started_at),
                                a.end_s))
    return out


def markers(tried: Sequence[Attempt], stopping: Sequence[Stopping] = ()) -> list[Marker]:
    """A marker wherever one attempt of a job is followed by another, placed where the
    earlier attempt was asked to stop (or, if it was not asked, where it ended)."""
    asked = {(s.job_id, s.attempt): s.start_s for s in stopping}
    by_job: dict[str, list[Attempt]] = {}
    for a in tried:
        by_job.setdefault(a.job_id, []).append(a)
    out = []
    for mine in by_job.values():
        mine.sort(key=lambda a: a.started_at)
        for before, after in zip(mine, mine[1:], strict=False):
            n0, n1 = len(before.cores), len(after.cores)
            kind = "shrink" if n1 < n0 else "grow" if n1 > n0 else "preempted"
            ended = before.end_s if before.end_s is not None else after.start_s
            when = asked.get((before.job_id, before.attempt), ended)
            out.append(Marker(before.job_id, before.job, kind, when, n0, n1))
    return sorted(out, key=lambda m: m.time_s)


def build(pool: Pool, jobs: Sequence[JobRecord], history: Sequence[CompositionRecord],
          events: Iterable[EventRecord], now: float) -> Timeline:
    """The timeline of one store: every attempt as bars on the rows it held."""
    ordered = sorted(jobs, key=lambda j: (j.submitted_at, j.id))
    origin = min((j.submitted_at for j in ordered), default=now)
    names = {j.id: j.name for j in ordered}
    tried = attempts(history, names, origin)
    end_s = max([now - origin, *(a.end_s for a in tried if a.end_s is not None)])
    nodes = len(pool.nodes)
    held_rows = {(a.node, c) for a in tried for c in a.cores}
    rows: list[str] = []
    for node in pool.nodes:
        for core in sorted(node.cores):
            if len(pool.nodes) * len(node.cores) <= MAX_CORE_ROWS or (node.name, core) in held_rows:
                rows.append(_core_row(node.name, core, nodes))
    device_rows = [f"{node.name} gpu{d.index}" for node in pool.nodes for d in node.devices]
    rows += device_rows + sorted({g for a in tried for g in a.gpus} - set(device_rows))
    rows += sorted({_core_row(a.node, c, nodes) for a in tried for c in a.cores} - set(rows))
    bars = [Bar(row, a.job, a.attempt, a.start_s, end_s if a.end_s is None else a.end_s)
            for a in tried
            for row in (*(_core_row(a.node, c, nodes) for c in a.cores), *a.gpus)]
    events = list(events)
    stopping = stops(tried, events)
    return Timeline(origin, end_s, tuple(dict.fromkeys(j.name for j in ordered)), tuple(rows),
                    tuple(tried), tuple(bars), tuple(waits(ordered, tried, events, origin, now)),
                    tuple(markers(tried, stopping)), tuple(stopping))


def job_colours(timeline: Timeline) -> dict[str, str]:
    """One colour per job, in submission order (the same in the PNG and the terminal)."""
    return {name: JOB_COLOURS[i % len(JOB_COLOURS)] for i, name in enumerate(timeline.jobs)}


def _label_levels(timeline: Timeline, span: float) -> list[tuple[Marker, str, bool, int]]:
    """Each marker's label, whether it goes left of its line (no room on the right), and
    its level above the axes: the lowest level where it overlaps no other label."""
    placed: list[tuple[float, float, int]] = []
    out = []
    for m in timeline.markers:
        text = f"{ARROWS.get(m.kind, '■')} {m.job} {m.cores_before}→{m.cores_after}"
        width = (len(text) + 1) * CHAR_SHARE * span
        left = m.time_s + width > span
        lo, hi = (m.time_s - width, m.time_s) if left else (m.time_s, m.time_s + width)
        level = 0
        while any(level == lv and lo < b and a < hi for a, b, lv in placed):
            level += 1
        placed.append((lo, hi, level))
        out.append((m, text, left, level))
    return out


def plot(timeline: Timeline, title: str, png: Path) -> None:
    """Rows of cores (and GPUs or slices) above a lane of waits; one colour per job."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colour = job_colours(timeline)
    wait_bars = timeline.wait_bars()
    waiting = list(dict.fromkeys(w.job for w in wait_bars))
    rows = list(timeline.rows)
    span = timeline.end_s or 1.0
    labels = _label_levels(timeline, span)
    levels = max((lv for *_, lv in labels), default=-1) + 1
    row_in, wait_in = 0.45, 0.25  # inches per core row and per wait row
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, layout="constrained",
        figsize=(9, 1.9 + 0.2 * levels + row_in * len(rows) + wait_in * max(len(waiting), 1)),
        gridspec_kw={"height_ratios": [row_in * max(len(rows), 1),
                                       wait_in * max(len(waiting), 1)]})
    fig.suptitle(title)
    y_of = {row: i for i, row in enumerate(rows)}
    for bar in timeline.bars:
        width = bar.end_s - bar.start_s
        top.barh(y_of[bar.row], width, left=bar.start_s, height=0.8,
                 color=colour[bar.job], edgecolor="white", linewidth=1)
        if width > (len(bar.job) + 2) * CHAR_SHARE * span:  # named where it fits
            top.text(bar.start_s + width / 2, y_of[bar.row], bar.job, ha="center",
                     va="center", fontsize=8, color="white", clip_on=True)
    for stop in timeline.stops:  # checkpointing: hatched over the rows the attempt held
        for bar in timeline.bars:
            if (bar.job, bar.attempt) == (stop.job, stop.attempt):
                top.barh(y_of[bar.row], stop.end_s - stop.start_s, left=stop.start_s,
                         height=0.8, facecolor="none", edgecolor="white", hatch="xx",
                         linewidth=0)
    top.set_yticks(range(len(rows)), rows)
    top.set_ylim(len(rows) - 0.4, -0.6)
    top.set_ylabel("held by")
    wait_y = {name: i for i, name in enumerate(waiting)}
    for w in wait_bars:
        bottom.barh(wait_y[w.job], w.seconds, left=w.start_s, height=0.6,
                    facecolor=colour[w.job], alpha=0.5, edgecolor=colour[w.job],
                    hatch="//" if w.kind == "requeued" else None)
    bottom.set_yticks(range(len(waiting)), waiting)
    bottom.set_ylim(max(len(waiting), 1) - 0.5, -0.5)
    bottom.set_ylabel("waiting" if waiting else "no job waited")
    bottom.set_xlabel("seconds since the first job was submitted")
    bottom.set_xlim(0, span * 1.01)
    for m, text, left, level in labels:
        for ax in (top, bottom):
            ax.axvline(m.time_s, color="black", linestyle=":", linewidth=1.2)
        top.annotate(text, (m.time_s, -0.6), xytext=(-2 if left else 2, 2 + 11 * level),
                     textcoords="offset points", fontsize=8, va="bottom",
                     ha="right" if left else "left", annotation_clip=False)
    for ax in (top, bottom):
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    handles: list[Artist] = [Patch(color=colour[name], label=name) for name in timeline.jobs]
    if timeline.markers:
        handles.append(Line2D([], [], color="black", linestyle=":",
                              label="▼ shrink / ▲ grow / ■ preempted (cores before→after)"))
    if timeline.stops:
        handles.append(Patch(facecolor="grey", edgecolor="white", hatch="xx",
                             label="stopping: saving a checkpoint"))
    if any(w.kind == "requeued" for w in wait_bars):
        handles.append(Patch(facecolor="white", edgecolor="grey", hatch="//",
                             label="waiting again (preempted or resized)"))
    fig.legend(handles=handles, loc="outside lower center",
               ncols=len(handles) if len(handles) <= 4 else 3,
               fontsize=8, frameon=False)
    fig.savefig(png, dpi=110)
    plt.close(fig)
