"""The demo's elastic scene: a high-priority job arrives while an elastic job holds the pool.

The elastic job (``resources.cpus: {min: 1, max: 2}``) starts on both cores. Once it has
trained there for a few reports (so its 2-core speed is measured), the urgent job is
submitted.
The policy shrinks the elastic job to make room (a checkpoint, then a restart on 1 core
that resumes from it), the urgent job runs beside it, and when it ends the elastic job is
grown back to 2 cores the same way. The arrival waits for progress rather than a fixed
delay, so the scene tells the same story on a loaded machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from slicebox.controller import submit_file
from slicebox.controller.reserve import without_cores
from slicebox.demo.report import Check, attempt_details
from slicebox.demo.timeline import Timeline
from slicebox.placement import Placer
from slicebox.pool.model import Pool
from slicebox.snapshot import JobState
from slicebox.store import Store

SCENE_DIR = Path(__file__).parent / "elastic"
ELASTIC_SPEC = SCENE_DIR / "elastic-lm.yaml"
URGENT_SPEC = SCENE_DIR / "urgent-cnn.yaml"
POLICY = "fifo-elastic"  # FIFO by priority, with elastic jobs resized (policies/elastic.py)
STAGE_CORES = 2  # the scene plays on this many cores, whatever the machine has
# The urgent job arrives once the elastic job has trained a while on all its cores: the
# policy grows it back later only if the measured speed-up pays for a restart, and a rate
# taken from one report right after start-up (seen: 1.03x, so no grow) is noise.
ARRIVE_AFTER_REPORTS = 5
ARRIVE_AFTER_SECONDS = 4.0


def stage(pool: Pool) -> Pool | None:
    """The part of the pool the scene plays on: the first node's lowest ``STAGE_CORES``
    cores, so that the elastic job (1 to 2 cores) holds all of it on any machine; None
    where the node has fewer (there is nothing to shrink or grow on one core)."""
    node = pool.nodes[0]
    cores = sorted(node.cores)
    if len(cores) < STAGE_CORES:
        return None
    others = tuple(n.name for n in pool.nodes[1:])
    staged = without_cores(pool, node.name, tuple(cores[STAGE_CORES:]))
    return dataclasses.replace(staged, nodes=tuple(n for n in staged.nodes
                                                   if n.name not in others))


@dataclass
class ElasticScene:
    """Drives the scene from the controller's rounds (``on_round``)."""

    store: Store
    pool: Pool
    placer: Placer
    root: Path  # where the specs' relative paths start (the repository root)
    elastic_id: str | None = None
    urgent_id: str | None = None
    log: list[str] = field(default_factory=list)

    def begin(self) -> str:
        self.elastic_id = submit_file(self.store, self.pool, self.placer, ELASTIC_SPEC,
                                      cwd=self.root)
        return f"submitted {ELASTIC_SPEC.name} as job {self.elastic_id} (elastic: 1-2 cores)"

    def on_round(self) -> str | None:
        """Submit the urgent job once the elastic one has trained a while on all the cores
        it may take; a line to print when that happens."""
        if self.elastic_id is None or self.urgent_id is not None:
            return None
        job = self.store.job(self.elastic_id)
        comp = job.composition
        if (job.state is not JobState.RUNNING or comp is None or not job.samples
                or comp.core_count < job.spec.resources.max_cpus):
            return None
        reports = [p.time for p in self.store.progress(job.id)
                   if p.attempt == job.attempt and p.samples]
        if (len(reports) < ARRIVE_AFTER_REPORTS
                or reports[-1] - reports[0] < ARRIVE_AFTER_SECONDS):
            return None
        self.urgent_id = submit_file(self.store, self.pool, self.placer, URGENT_SPEC,
                                     cwd=self.root)
        return (f"submitted {URGENT_SPEC.name} as job {self.urgent_id} (priority "
                f"{self.store.job(self.urgent_id).priority}) while {job.name} holds cores "
                f"{list(comp.cores)}")


def scene_checks(store: Store, timeline: Timeline, elastic_id: str | None,
                 urgent_id: str | None) -> list[Check]:
    """What the scene must show, each stated and measured from the store."""
    if elastic_id is None:
        return []
    elastic = store.job(elastic_id)
    name = elastic.name
    urgent = store.job(urgent_id) if urgent_id else None
    mine = [m for m in timeline.markers if m.job_id == elastic_id]
    origin = timeline.origin
    arrived = (urgent.submitted_at - origin) if urgent else None
    urgent_end = (urgent.finished_at - origin) if urgent and urgent.finished_at else None
    shrinks = [m for m in mine if m.kind == "shrink"
               and arrived is not None and m.time_s >= arrived]
    grows = [m for m in mine if m.kind == "grow"
             and urgent_end is not None and m.time_s >= urgent_end]
    small = [a for a in timeline.attempts_of(elastic_id)
             if len(a.cores) < elastic.spec.resources.max_cpus]
    trained = _samples_in(store, elastic_id, [a.attempt for a in small])
    out = [
        Check(f"{name} shrank when {urgent.name if urgent else 'the urgent job'} arrived",
              bool(shrinks),
              "; ".join(f"at {m.time_s:.1f} s: {m.cores_before}→{m.cores_after} cores"
                        for m in shrinks) or f"no shrink after {arrived or 0:.1f} s"),
        Check(f"{name} kept training on fewer cores", trained > 0,
              f"{trained:,} samples in attempt(s) "
              f"{', '.join(str(a.attempt) for a in small) or '-'}"),
        Check(f"{name} grew back when the urgent job ended", bool(grows),
              "; ".join(f"at {m.time_s:.1f} s: {m.cores_before}→{m.cores_after} cores"
                        for m in grows) or f"no grow after {urgent_end or 0:.1f} s"),
    ]
    out.append(_resumed_check(store, elastic_id, name))
    return out


REQUEUED = ("checkpointed", "killed", "gone")  # CheckpointRecord.outcome of a requeue


def _resumed_check(store: Store, job_id: str, name: str) -> Check:
    """Each restart resumed from a checkpoint the attempt before it saved (the position
    restored may round down to a whole batch; starting over would restore nothing)."""
    records = store.checkpoints(job_id)
    requeues = [r for r in records if r.outcome in REQUEUED]
    restored = {r.attempt: r.restored_samples for r in records}
    resumed = [r for r in requeues if r.samples is not None
               and (got := restored.get(r.attempt + 1)) is not None and 0 < got <= r.samples]
    lost = sum(r.lost_samples or 0 for r in requeues)
    saves = [r.save_seconds for r in requeues if r.save_seconds is not None]
    loads = [r.restore_seconds for r in records if r.restore_seconds is not None]
    return Check(f"{name} resumed from its checkpoint after each restart",
                 bool(requeues) and len(resumed) == len(requeues),
                 f"{len(resumed)} of {len(requeues)} restarts resumed; samples redone: "
                 f"{lost:,}; checkpoint save {sum(saves):.2f} s, restore {sum(loads):.2f} s")


def _samples_in(store: Store, job_id: str, attempts: list[int]) -> int:
    """Samples trained within the given attempts, beyond the checkpoint each resumed from."""
    details = attempt_details(store)
    return sum(details.get((job_id, a), {}).get("samples_trained") or 0 for a in attempts)
