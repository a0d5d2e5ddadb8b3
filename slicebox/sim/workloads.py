"""Trace records become simulated jobs: a demand, an amount of work and a speed family.

Work is counted in the unit of the job's speed model, so that "how far along" never
depends on which GPUs a job happened to get:

- ``duration`` (Philly, Alibaba): reference GPU-seconds, ``duration x GPUs``; the job
  runs at ``GPUs x kind factor`` per second (1 on the pool's reference kind).
- ``gavel``: steps (``total_steps``), at Gavel's measured steps/s.
- ``sia``: samples processed, sized so the job trains for Sia's ``max_epochs``: the
  useful samples of an epoch are the data set, and each processed sample is worth
  the batch size's statistical efficiency in that epoch (Sia's simulator advances
  progress by goodput = throughput x efficiency; with a fixed batch size that is the
  same as a fixed amount of processed samples at plain throughput).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from slicebox.errors import InputError
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Pool
from slicebox.sim import datasets
from slicebox.sim.job import Family, SimJob
from slicebox.sim.speed import SIA_TYPES, SpeedBook
from slicebox.sim.traces.model import TraceJob
from slicebox.spec.demand import DatasetRef, Demand


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """What the traces leave open, in one place so the docs and reports can state it."""

    restart_seconds: float = 30.0  # checkpoint + restore after a preemption (non-Sia jobs)
    cpus_per_gpu: int | None = None  # None: the pool's smallest per-GPU share of cores
    memory_gib_per_gpu: float | None = None  # None: the pool's smallest per-GPU share
    # Philly jobs (no model of their own) get a Synergy model drawn at random, which is
    # Synergy's own method on this trace. Gavel and Sia jobs keep their measured speed:
    # those measurements already include the CPUs of the testbed, so applying Synergy's
    # grids on top would double-count; ``measured_cpu_sensitivity`` opts in anyway.
    cpu_sensitivity: bool = True
    measured_cpu_sensitivity: bool = False
    seed: int = 0
    # Pollux/Sia jobs elastic (GPU count chosen by the policy, batch size following it,
    # progress in goodput)? None: elastic exactly when the policy resizes jobs
    # (``Policy.resizes_jobs``: ``sia``, ``slicebox``), rigid at the trace's replicas for
    # the others, which would leave an elastic job on its minimum of one GPU.
    elastic: bool | None = None
    max_elastic_gpus: int = 64  # Sia's simulator: "can't handle more"


# Synergy's model families, drawn for jobs that name no model (Synergy does the same
# on the Philly trace: each job gets a model class at random).
SYNERGY_FAMILIES = ("alexnet", "res18", "res50", "mobilenet", "shufflenet", "m5",
                    "deepspeech", "gnmt", "lstm", "transformer", "bert", "vae")
_SIA_SYNERGY = {"cifar10": "res18", "imagenet": "res50", "bert": "bert",
                "deepspeech2": "deepspeech"}
_GAVEL_SYNERGY = {"ResNet-18": "res18", "ResNet-50": "res50", "Transformer": "transformer",
                  "LM": "lstm"}


def family_of(job: TraceJob) -> Family:
    """Which speed model a trace record needs, from what it carries."""
    if job.total_work is not None:
        return Family.GAVEL
    if job.duration is not None:
        return Family.DURATION
    if job.batch_size is not None:
        return Family.SIA
    raise InputError(f"job {job.id!r}: no duration, total_work or batch size to size it by")


def pool_shares(pool: Pool) -> tuple[int, float]:
    """Cores and memory per GPU that every GPU node can give (the GPU-proportional
    share a job asks for by default)."""
    cores, memory = [], []
    for node in pool.nodes:
        if node.devices:
            cores.append(len(node.cores) // len(node.devices))
            memory.append(node.memory_gib / len(node.devices))
    if not cores:
        return 1, 1.0
    return max(1, min(cores)), max(1.0, min(memory))


def _drawn_model(job_id: str, seed: int) -> str:
    # A hash, not a shared RNG, so a job's model does not depend on which other jobs
    # were read (skipped lines, a subset of the trace).
    digest = hashlib.blake2b(f"{seed}:{job_id}".encode(), digest_size=4).digest()
    return SYNERGY_FAMILIES[int.from_bytes(digest, "big") % len(SYNERGY_FAMILIES)]


def build_jobs(trace: Sequence[TraceJob], pool: Pool, speeds: SpeedBook,
               defaults: JobDefaults = JobDefaults(), elastic: bool = False) -> list[SimJob]:
    """Simulated jobs for a trace on a pool; a job no kind of the pool can run is an
    error that names it. ``elastic``: Pollux/Sia jobs are elastic (``defaults.elastic``
    overrides it when set)."""
    if defaults.elastic is not None:
        elastic = defaults.elastic
    cpus_share, memory_share = pool_shares(pool)
    cpus_per_gpu = defaults.cpus_per_gpu or cpus_share
    memory_per_gpu = defaults.memory_gib_per_gpu or memory_share
    kinds = tuple(sorted(pool.gpu_counts()))
    jobs = []
    for record in trace:
        family = family_of(record)
        if elastic and family is Family.SIA:
            jobs.append(_build_elastic(record, kinds, speeds, cpus_per_gpu, memory_per_gpu,
                                       defaults))
            continue
        jobs.append(_build_one(record, family, kinds, speeds, cpus_per_gpu, memory_per_gpu,
                               defaults))
    return jobs


def _build_one(record: TraceJob, family: Family, kinds: tuple[str, ...], speeds: SpeedBook,
               cpus_per_gpu: int, memory_per_gpu: float, defaults: JobDefaults) -> SimJob:
    share = record.gpu_fraction if record.gpu_fraction is not None else float(record.num_gpus)
    # A job the trace gives no CPU/memory for asks for its GPU-proportional share,
    # which is what schedulers without a multi-resource policy hand out.
    cpus = (math.ceil(record.cpus) if record.cpus is not None
            else max(1, round(cpus_per_gpu * share)))
    memory = (record.memory_gib if record.memory_gib is not None
              else memory_per_gpu * max(share, 0.1))
    restart = defaults.restart_seconds
    startup = 0.0
    dataset: DatasetRef | None = None
    cpu_model: str | None = None
    batch = record.batch_size
    if family is Family.DURATION:
        assert record.duration is not None
        workload, model = record.workload, record.workload
        # GPU-seconds on the reference kind; a CPU-only job's work is its duration.
        work = max(record.duration, 1e-9) * (share if share > 0 else 1.0)
        if defaults.cpu_sensitivity and record.gpu_fraction is None and record.num_gpus > 0:
            cpu_model = _drawn_model(record.id, defaults.seed)
    elif family is Family.GAVEL:
        assert record.total_work is not None
        workload, model = record.workload, record.workload
        work = record.total_work
        dataset = datasets.for_gavel(record.workload)
        base = _GAVEL_SYNERGY.get(record.workload.split(" (", 1)[0])
        if base and defaults.measured_cpu_sensitivity:
            cpu_model = base
    else:
        app = record.workload
        assert batch is not None
        workload, model = f"{app}@{batch}", app
        work = speeds.sia_work(app, batch)
        restart = startup = speeds.sia.rescale_time(app)
        dataset = datasets.for_sia(app)
        base = _SIA_SYNERGY.get(app)
        if base and defaults.measured_cpu_sensitivity:
            cpu_model = base
    allowed = _allowed_kinds(record, family, model, batch, kinds, speeds)
    if not allowed:
        raise InputError(f"job {record.id!r} ({workload}, {record.num_gpus} GPUs) cannot run on "
                         f"any kind of this pool ({', '.join(kinds) or 'no GPUs'})")
    demand = Demand(
        gpus=record.num_gpus,
        max_gpus=record.num_gpus,
        kinds=allowed if len(allowed) < len(kinds) else (),
        fraction=record.gpu_fraction,
        cpus=cpus,
        memory_gib=float(memory),
    )
    return SimJob(
        id=record.id, arrival=record.arrival, demand=demand, family=family,
        workload=workload, work=work, model=model, batch_size=batch,
        startup_seconds=startup, restart_seconds=restart, dataset=dataset,
        priority=0, weight=record.priority_weight, group=record.group, cpu_model=cpu_model,
        duration=record.duration,
    )


def _build_elastic(record: TraceJob, kinds: tuple[str, ...], speeds: SpeedBook,
                   cpus_per_gpu: int, memory_per_gpu: float, defaults: JobDefaults) -> SimJob:
    """A Pollux/Sia job whose GPU count and batch size may change as it runs: it asks
    for one GPU and may use up to Sia's limit (64, and no more replicas than its
    largest batch size over its smallest per-GPU batch); its work is Sia's progress
    target in useful samples (max_epochs x data set)."""
    app = record.workload
    assert record.batch_size is not None
    recipe = speeds.sia.application(app)
    allowed = tuple(k for k in kinds if speeds.sia_goodput(app, k, 1, None, 0)[0] > 0.0)
    if record.gpu_spec:
        wanted = set(record.gpu_spec)
        allowed = tuple(k for k in allowed if k in wanted) or allowed
    if not allowed:
        raise InputError(f"job {record.id!r} ({app}) cannot run on any kind of this pool "
                         f"({', '.join(kinds) or 'no GPUs'})")
    largest = speeds.sia.validated_batch_sizes(app)[-1]
    replicas = max(int(largest // max(speeds.sia.min_local_bsz(app, SIA_TYPES[k]), 1.0))
                   for k in allowed)
    most = max(1, min(defaults.max_elastic_gpus, replicas))
    demand = Demand(gpus=1, max_gpus=most, kinds=allowed if len(allowed) < len(kinds) else (),
                    cpus=max(1, cpus_per_gpu), memory_gib=float(memory_per_gpu))
    return SimJob(
        id=record.id, arrival=record.arrival, demand=demand, family=Family.SIA,
        workload=f"{app}@{record.batch_size}", work=float(recipe.total_samples), model=app,
        batch_size=record.batch_size, startup_seconds=recipe.rescale_time,
        restart_seconds=recipe.rescale_time, dataset=datasets.for_sia(app),
        weight=record.priority_weight, group=record.group, elastic=True,
        epoch_samples=float(recipe.dataset_size))


def _allowed_kinds(record: TraceJob, family: Family, model: str, batch: int | None,
                   kinds: tuple[str, ...], speeds: SpeedBook) -> tuple[str, ...]:
    """The pool's kinds this job may use: the trace's restriction, and where it has a
    speed at its size (Sia has no data for some shapes on some GPU types)."""
    wanted = kinds
    if record.gpu_spec:
        spec = set()
        for name in record.gpu_spec:
            try:
                spec.add(get_kind(name).name)
            except KeyError:
                spec.add(name)
        wanted = tuple(k for k in kinds if k in spec)
    if family is Family.DURATION or record.num_gpus == 0:
        return wanted
    share = record.gpu_fraction if record.gpu_fraction is not None else float(record.num_gpus)
    return tuple(k for k in wanted
                 if speeds.model_rate(family, model, batch, k, share, None) > 0.0)
