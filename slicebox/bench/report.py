"""Showing suite results: a rich table for the terminal and a PNG plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from slicebox.bench.results import BenchResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SHORT_METRIC = {"accuracy": "acc", "perplexity": "ppl"}


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    # Throughputs span 100 to 100,000+ samples/s: whole numbers are precise enough there.
    return f"{value:,.0f}" if value >= 1000 else f"{value:,.{digits}f}"


def _quality(result: BenchResult) -> str:
    if result.quality is None:
        return "-"
    target = "" if result.quality_target is None else f"/{result.quality_target:g}"
    mark = " ✓" if result.reached_target else ""
    metric = _SHORT_METRIC.get(result.quality_metric, result.quality_metric)
    return f"{metric} {result.quality:.3f}{target}{mark}"


def _detail(result: BenchResult) -> str:
    parts = []
    if result.server_p99_latency_ms is not None:
        parts.append(
            f"server p99 {result.server_p99_latency_ms:.2f} ms @ {result.server_target_qps:g} qps"
        )
    if result.dense_quality is not None:
        parts.append(f"dense {result.dense_quality:.3f}")
    if result.sparse_speedup is not None:
        parts.append(f"2:4 kernels {result.sparse_speedup:.2f}x")
    if result.contended and result.cotenant_cores is not None:
        parts.append(f"[yellow]shared: others used {result.cotenant_cores:.1f} cores[/yellow]")
    if result.reason:
        parts.append(result.reason)
    return "; ".join(parts)


def results_table(results: Sequence[BenchResult], title: str = "Slicebox bench") -> Table:
    """workload x slice x precision: samples/s, time-to-quality, quality reached."""
    table = Table(title=title, caption="TTQ: time-to-quality, run_start to run_stop")
    # Numbers keep their width; on a narrow terminal the text columns wrap instead.
    table.add_column("workload", min_width=6)
    table.add_column("slice", min_width=6)
    table.add_column("prec", min_width=4)
    table.add_column("status", min_width=4)
    table.add_column("samples/s", justify="right", min_width=9)
    table.add_column("TTQ s", justify="right", min_width=6)
    table.add_column("quality/target", min_width=10)
    table.add_column("detail", overflow="fold")
    for r in results:
        status = r.status if r.status != "ok" else "[green]ok[/green]"
        table.add_row(
            r.workload,
            r.slice,
            r.precision,
            status,
            _number(r.samples_per_s),
            _number(r.time_to_quality_s, 2),
            _quality(r),
            _detail(r),
        )
    return table


SHARED_HATCH = "///"


def plot_results(results: Sequence[BenchResult], path_png: str | Path) -> Path:
    """Draw `results_figure` into a PNG at ``path_png``."""
    figure = results_figure(results)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def results_figure(results: Sequence[BenchResult]) -> Figure:
    """Bar charts of samples/s and time-to-quality per workload, one bar per slice+precision.

    Throughput is on a log axis: workloads differ by orders of magnitude in samples/s.
    Cells with no measurement (not supported, failed, skipped) are left out, not drawn
    as zero. Cells measured while other processes used the slice's cores ("shared" in
    the table) are hatched and hollow, with a legend entry saying so: their numbers
    understate the slice.
    """
    # The Figure API with an explicit Agg canvas: no global backend switch, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    measured = [r for r in results if r.status == "ok"]
    workloads = list(dict.fromkeys(r.workload for r in measured))
    variants = list(dict.fromkeys(f"{r.slice} {r.precision}" for r in measured))
    figure = Figure(figsize=(max(6.0, 1.6 * len(workloads) * max(1, len(variants)) / 2), 7))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1)
    width = 0.8 / max(1, len(variants))
    colours = [f"C{i % 10}" for i in range(len(variants))]
    for panel, (field, label) in zip(
        axes,
        (("samples_per_s", "samples/s (log)"), ("time_to_quality_s", "time-to-quality (s)")),
        strict=True,
    ):
        for v, variant in enumerate(variants):
            for w, workload in enumerate(workloads):
                for r in measured:
                    value = getattr(r, field)
                    if r.workload != workload or f"{r.slice} {r.precision}" != variant:
                        continue
                    if not value:
                        continue
                    x = w + (v - (len(variants) - 1) / 2) * width
                    if r.contended:
                        panel.bar(x, value, width=width, facecolor="none",
                                  edgecolor=colours[v], hatch=SHARED_HATCH, linewidth=1.2)
                    else:
                        panel.bar(x, value, width=width, color=colours[v])
        panel.set_xticks(range(len(workloads)), workloads)
        panel.set_xlim(-0.5, max(len(workloads), 1) - 0.5)  # same columns in both panels
        panel.set_ylabel(label)
        if field == "samples_per_s":
            panel.set_yscale("log")
            tallest = max((r.samples_per_s or 0.0 for r in measured), default=0.0)
            if tallest > 0:
                panel.set_ylim(top=tallest * 8)  # headroom for the legend above the bars
    if variants:
        handles = [Patch(color=colours[v], label=variant) for v, variant in enumerate(variants)]
        if any(r.contended for r in measured):
            handles.append(Patch(facecolor="none", edgecolor="0.3", hatch=SHARED_HATCH,
                                 label="shared: other processes used the slice's cores"))
        axes[0].legend(handles=handles, fontsize="small", ncols=2, loc="upper left")
    else:
        axes[0].text(0.5, 0.5, "no measured cells", ha="center", transform=axes[0].transAxes)
    axes[0].set_title("Slicebox reference workloads by slice shape and precision")
    figure.tight_layout()
    return figure

