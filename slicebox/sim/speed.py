"""How fast a simulated job runs on the slice it gets.

One ``SpeedBook`` answers every question the engine and the policies ask, from the
public measurements (``slicebox.sim.workload_models``):

- GPU kind and count: Gavel's steps/s (Gavel traces), Sia's measured step times for
  the placement (Pollux/Sia workloads), or the trace's own duration times a kind
  factor (Philly, Alibaba: the trace only says how long a job ran on its own GPUs).
- CPU cores and memory: Synergy's sensitivity grids, relative to what the job asked
  for (a job given its request runs at the trace's speed; more or fewer cores move it
  along its model's grid).
- Sharing a GPU: Gavel's co-located throughputs where both jobs are Gavel job types on
  a Gavel GPU type; elsewhere a job on a share of a GPU runs at that share of its speed
  (no interference data, so none is invented).

Answers are cached: the engine asks at every start and every change of co-runners.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping

import numpy as np

from slicebox.pool.kinds import get_kind
from slicebox.sim.job import Family, SimJob
from slicebox.sim.workload_models import GavelThroughputs, SiaProfiles, SynergySensitivity
from slicebox.sim.workload_models.errors import UnknownNameError

# Catalogue kind -> the GPU type name each data set uses.
SIA_TYPES: dict[str, str] = {"T4": "aws", "A100-40GB": "dgx-ext", "RTX-2080Ti": "rtx",
                             "V100-32GB": "azure", "Quadro-RTX-6000": "quad"}
GAVEL_TYPES: dict[str, str] = {"V100": "v100", "V100-32GB": "v100", "P100": "p100",
                               "K80": "k80"}

PerNode = tuple[int, ...] | None
_BATCH_CANDIDATES = 50  # batch sizes tried per allocation (geometric, as Pollux does)


_SHARED_SIA: dict[str, SiaProfiles] = {}


def shared_sia_profiles() -> SiaProfiles:
    """One ``SiaProfiles`` per process and data directory: the profiles are read-only,
    and their interpolators cost seconds to build, so runs share them."""
    profiles = SiaProfiles()
    return _SHARED_SIA.setdefault(str(profiles.root), profiles)


class SpeedBook:
    """Work per second of a job on a slice, from the public profiles (loaded lazily)."""

    def __init__(self, kinds: Iterable[str] = (), *, reference_kind: str | None = None,
                 kind_factors: Mapping[str, float] | None = None,
                 gavel: GavelThroughputs | None = None, sia: SiaProfiles | None = None,
                 synergy: SynergySensitivity | None = None, cpu_sensitivity: bool = True) -> None:
        """``kinds``: the pool's GPU kinds (by count, most numerous first, or any order
        with ``reference_kind``). Duration-based jobs run at their trace speed on the
        reference kind and at the ratio of fp32 peak rates elsewhere, unless
        ``kind_factors`` says otherwise."""
        self.kinds = tuple(kinds)
        self.reference_kind = reference_kind or (self.kinds[0] if self.kinds else None)
        self._kind_factors = dict(kind_factors or {})
        self._gavel = gavel
        self._sia = sia
        self._synergy = synergy
        self.cpu_sensitivity = cpu_sensitivity
        self._rates: dict[tuple[object, ...], float] = {}
        self._cpu: dict[tuple[object, ...], float] = {}
        self._pairs: dict[tuple[object, ...], tuple[float, float] | None] = {}
        self._goodputs: dict[tuple[object, ...], tuple[float, int]] = {}
        self._sia_speeds: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}

    # -- data sets, loaded on first use -------------------------------------------

    @property
    def gavel(self) -> GavelThroughputs:
        if self._gavel is None:
            self._gavel = GavelThroughputs()
        return self._gavel

    @property
    def sia(self) -> SiaProfiles:
        if self._sia is None:
            self._sia = shared_sia_profiles()
        return self._sia

    @property
    def synergy(self) -> SynergySensitivity:
        if self._synergy is None:
            self._synergy = SynergySensitivity()
        return self._synergy

    # -- GPU speed ------------------------------------------------------------------

    def kind_factor(self, kind: str) -> float:
        """Speed of a duration-based job on ``kind`` relative to the reference kind."""
        factor = self._kind_factors.get(kind)
        if factor is None:
            if self.reference_kind is None or kind == self.reference_kind:
                factor = 1.0
            else:
                ref = get_kind(self.reference_kind).peak("fp32") or 1.0
                factor = (get_kind(kind).peak("fp32") or ref) / ref
            self._kind_factors[kind] = factor
        return factor

    def model_rate(self, family: Family, model: str, batch: int | None, kind: str,
                   gpus: float, per_node: PerNode) -> float:
        """Work/s of a model alone on ``gpus`` devices of ``kind`` (``per_node``: how
        many on each node, None for packed); 0.0 where it cannot run."""
        key = (family, model, batch, kind, gpus, per_node)
        rate = self._rates.get(key)
        if rate is None:
            rate = self._model_rate(family, model, batch, kind, gpus, per_node)
            self._rates[key] = rate
        return rate

    def job_rate(self, job: SimJob, kind: str, gpus: float, per_node: PerNode = None,
                 epoch: int = 0) -> float:
        """Work/s of ``job`` alone on ``gpus`` of ``kind``; an elastic Sia job's work is
        useful samples, so its rate is its goodput at the best batch size in ``epoch``."""
        if job.elastic:
            return self.sia_goodput(job.model, kind, gpus, per_node, epoch)[0]
        return self.model_rate(job.family, job.model, job.batch_size, kind, gpus, per_node)

    def sia_goodput(self, app: str, kind: str, gpus: float, per_node: PerNode, epoch: int,
                    max_batch: int | None = None) -> tuple[float, int]:
        """(goodput, batch size): useful samples/s of ``app`` on ``gpus`` of ``kind`` in
        ``epoch`` at the batch size that maximises it, and that batch size.

        Goodput is Sia's and Pollux's: throughput at a global batch size (Sia's step
        times, gradient accumulation above the largest profiled per-GPU batch, Sia's
        calibration) times the statistical efficiency of that batch size in that epoch.
        Candidates run from ``max(initial batch, min per-GPU batch x GPUs)`` to
        ``max_batch`` (default: the largest validated batch size), geometrically, as
        Pollux's ``GoodputFunction.optimize`` searches them. (0.0, 0) where the shape
        cannot run."""
        key = ("sia-goodput", app, kind, gpus, per_node, epoch, max_batch)
        cached = self._goodputs.get(key)
        if cached is not None:
            return cached
        answer = self._sia_goodput(app, kind, gpus, per_node, epoch, max_batch)
        self._goodputs[key] = answer
        return answer

    def _sia_goodput(self, app: str, kind: str, gpus: float, per_node: PerNode, epoch: int,
                     max_batch: int | None) -> tuple[float, int]:
        candidates, speeds = self._sia_throughputs(app, kind, gpus, per_node, max_batch)
        if not len(candidates):
            return 0.0, 0
        goodputs = speeds * self.sia.efficiencies(app, candidates, epoch)
        best = int(np.argmax(goodputs))
        if goodputs[best] <= 0.0:
            return 0.0, 0
        return float(goodputs[best]), int(candidates[best])

    def _sia_throughputs(self, app: str, kind: str, gpus: float, per_node: PerNode,
                         max_batch: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The candidate batch sizes of a shape and its samples/s at each (the part of
        goodput that does not change by epoch), cached."""
        key = (app, kind, gpus, per_node, max_batch)
        cached = self._sia_speeds.get(key)
        if cached is not None:
            return cached
        empty = (np.zeros(0), np.zeros(0))
        stype = SIA_TYPES.get(kind)
        count = int(round(gpus))
        answer = empty
        if stype is not None and count >= 1:
            try:
                sizes = self.sia.validated_batch_sizes(app)
                low = max(float(sizes[0]),
                          math.ceil(self.sia.min_local_bsz(app, stype)) * count)
            except (UnknownNameError, ValueError):
                low, sizes = math.inf, (0,)
            high = float(min(max_batch or sizes[-1], sizes[-1]))
            if low <= high:
                candidates = sorted({int(round(b)) for b in
                                     np.geomspace(low, high, _BATCH_CANDIDATES)}
                                    | {int(low), int(high)})
                with contextlib.suppress(UnknownNameError, ValueError):
                    self.sia.prefetch(app, stype, count, candidates, placement=per_node)
                speeds = []
                for batch in candidates:
                    try:
                        speed = self.sia.samples_per_second(app, stype, count, batch,
                                                            placement=per_node)
                    except (UnknownNameError, ValueError):
                        speed = None
                    speeds.append(float(speed) if speed else 0.0)
                answer = (np.asarray(candidates, dtype=float), np.asarray(speeds))
        self._sia_speeds[key] = answer
        return answer

    def _model_rate(self, family: Family, model: str, batch: int | None, kind: str,
                    gpus: float, per_node: PerNode) -> float:
        if gpus <= 0:
            return 0.0
        if family is Family.DURATION:
            return self.kind_factor(kind) * gpus
        if family is Family.GAVEL:
            gtype = GAVEL_TYPES.get(kind)
            if gtype is None:
                return 0.0
            whole = max(1, math.ceil(gpus - 1e-9))
            spread = per_node is not None and len([n for n in per_node if n]) > 1
            try:
                alone = self.gavel.throughput(model, whole, gtype, consolidated=not spread)
            except UnknownNameError:
                return 0.0
            return alone * min(gpus / whole, 1.0)
        stype = SIA_TYPES.get(kind)
        if stype is None or batch is None or gpus < 1:
            return 0.0
        count = int(round(gpus))
        try:
            speed = self.sia.samples_per_second(model, stype, count, batch, placement=per_node)
        except (UnknownNameError, ValueError):
            return 0.0
        return float(speed) if speed else 0.0

    def colocated(self, a: SimJob, b: SimJob, kind: str) -> tuple[float, float] | None:
        """Work/s of ``a`` and ``b`` sharing the same GPU(s), where measured."""
        if a.family is not Family.GAVEL or b.family is not Family.GAVEL:
            return None
        gtype = GAVEL_TYPES.get(kind)
        if gtype is None:
            return None
        key = (a.model, a.demand.gpus, b.model, b.demand.gpus, gtype)
        if key not in self._pairs:
            try:
                pair = self.gavel.colocated(a.model, max(a.demand.gpus, 1), b.model,
                                            max(b.demand.gpus, 1), gtype)
            except UnknownNameError:
                pair = None
            self._pairs[key] = pair
        return self._pairs[key]

    # -- CPU cores and memory -------------------------------------------------------

    def cpu_factor(self, job: SimJob, cpus: float, memory_gib: float) -> float:
        """Speed with ``cpus`` cores and ``memory_gib`` relative to the job's request."""
        if not self.cpu_sensitivity or job.cpu_model is None:
            return 1.0
        demand = job.demand
        if cpus == demand.cpus and memory_gib == demand.memory_gib:
            return 1.0
        share = demand.gpu_share or 1.0
        key = (job.cpu_model, cpus, memory_gib, demand.cpus, demand.memory_gib, share)
        factor = self._cpu.get(key)
        if factor is None:
            gpus = max(1, demand.gpus)
            given = self.cpu_speedup(job.cpu_model, cpus / share, memory_gib / share, gpus)
            asked = self.cpu_speedup(job.cpu_model, demand.cpus / share,
                                     demand.memory_gib / share, gpus)
            factor = given / asked
            self._cpu[key] = factor
        return factor

    def cpu_speedup(self, cpu_model: str, cpus_per_gpu: float, memory_per_gpu: float,
                    gpus: int = 1) -> float:
        """Synergy's relative throughput of a model at a per-GPU allocation."""
        return max(self.synergy.speedup(cpu_model, cpus_per_gpu, memory_per_gpu, gpus), 1e-6)

    # -- work -----------------------------------------------------------------------

    def sia_work(self, app: str, batch_size: int) -> float:
        """Samples a Sia job processes: each epoch's data set divided by the batch
        size's statistical efficiency in that epoch, over Sia's ``max_epochs``."""
        key = ("sia-work", app, batch_size)
        cached = self._rates.get(key)
        if cached is not None:
            return cached
        recipe = self.sia.application(app)
        sizes = self.sia.validated_batch_sizes(app)
        batch = min(max(batch_size, sizes[0]), sizes[-1])
        work = sum(recipe.dataset_size / self.sia.efficiency(app, batch, epoch)
                   for epoch in range(recipe.max_epochs))
        self._rates[key] = work
        return work
