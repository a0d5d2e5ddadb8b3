"""Questions answered from the composition history: utilisation over time, shared cores.

Pure functions over ``CompositionRecord`` lists, so the demo report, the API and the
simulator's metrics can use them on any history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from slicebox.store.records import CompositionRecord, UtilisationPoint


def utilisation_timeline(
    records: Iterable[CompositionRecord], now: float | None = None
) -> list[UtilisationPoint]:
    """A step function: what was held from each point's time until the next point.

    Attempts still running count until ``now`` (or stay open when ``now`` is None).
    """
    deltas: dict[float, list[float]] = {}
    for rec in records:
        comp = rec.composition
        change = [comp.gpu_share, float(len(comp.cores)), comp.memory_gib, 1.0]
        _add(deltas, rec.started_at, change)
        end = rec.ended_at if rec.ended_at is not None else now
        if end is not None:
            _add(deltas, end, [-x for x in change])
    points: list[UtilisationPoint] = []
    held = [0.0, 0.0, 0.0, 0.0]
    for time in sorted(deltas):
        held = [a + b for a, b in zip(held, deltas[time], strict=True)]
        # Rounding: float sums of shares such as 3/7 leave 1e-16 residues at zero.
        points.append(UtilisationPoint(time, round(held[0], 9), round(held[1]),
                                       round(held[2], 9), round(held[3])))
    return points


def _add(deltas: dict[float, list[float]], time: float, change: Sequence[float]) -> None:
    current = deltas.setdefault(time, [0.0, 0.0, 0.0, 0.0])
    for i, value in enumerate(change):
        current[i] += value


def core_conflicts(
    records: Sequence[CompositionRecord],
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Pairs of attempts that held a core on the same node at the same time (should be none)."""
    conflicts = []
    inf = float("inf")
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if a.node != b.node or a.job_id == b.job_id:
                continue
            a_end = a.ended_at if a.ended_at is not None else inf
            b_end = b.ended_at if b.ended_at is not None else inf
            if a.started_at < b_end and b.started_at < a_end:
                shared = tuple(sorted(set(a.composition.cores) & set(b.composition.cores)))
                if shared:
                    conflicts.append((a.job_id, b.job_id, shared))
    return conflicts
