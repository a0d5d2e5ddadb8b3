"""The job spec: what a user asks for, validated field by field (pydantic at the edge).

Everything here is untrusted input. Unknown fields are errors (a misspelt field must not
silently fall back to a default), types are strict (``cpus: true`` and ``cpus: "1"`` are
errors, not 1), numbers are finite and bounded, and every string can reach ``execve``
(no NUL, no surrogate; see ``spec.fields``). The command is an argv list that is never
given to a shell.

What depends on the machine or the pool (the program exists, the dataset is a real file,
the environment names the pool allows) is checked by admission (``store.admission``).
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from slicebox.errors import InputError
from slicebox.pool.kinds import get_kind
from slicebox.spec.fields import (
    MAX_EXEC_BYTES,
    Arg,
    PathText,
    Sequence,
    Text,
    encoded_size,
)
from slicebox.spec.service import MAX_SERVICE_NAME, ReplicaOf, ServiceSection
from slicebox.untrusted import describe, read_yaml, shown

MAX_SPEC_BYTES = 256 * 1024  # a job file is a few hundred bytes; anything huge is a mistake
SHELL_METACHARACTERS = re.compile(r"[|&;<>()$`\\\"'*?\[\]~{}\n]")
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
MAX_ARRAY_INDEX = 1_000_000  # as Slurm's MaxArraySize allows at most
MAX_SIZE_GIB = float(1 << 20)  # 1 PiB: a bound, so that no size is 1e308
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # a job id, as the store makes them and the API takes
MAX_DEPENDENCIES = 64  # jobs one job may wait for (each list)
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]


class SpecError(InputError):
    """A job spec was rejected; the message names the field and the reason."""


class _Strict(BaseModel):
    # strict: no coercion (true is not 1, "1" is not 1); allow_inf_nan: sizes are finite.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ElasticGpus(_Strict):
    min: Annotated[int, Field(ge=1, le=1024)]
    max: Annotated[int, Field(ge=1, le=1024)]

    @model_validator(mode="after")
    def _ordered(self) -> ElasticGpus:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class ElasticCpus(_Strict):
    min: Annotated[int, Field(ge=1, le=4096)]
    max: Annotated[int, Field(ge=1, le=4096)]

    @model_validator(mode="after")
    def _ordered(self) -> ElasticCpus:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class Resources(_Strict):
    # The validators below check the counts (with one clear message); WithJsonSchema tells
    # `slicebox schema`, and so an editor, the same bounds.
    gpus: Annotated[int, WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 1024})
                    ] | ElasticGpus = Field(
        0, description="GPU count, or {min, max} for an elastic job")
    gpu_kinds: Annotated[tuple[Text, ...], Sequence] = Field(
        (), strict=False, max_length=64, description="allowed device kinds; empty = any")
    gpu_memory_gib: float | None = Field(None, gt=0, le=4096,
                                         description="memory needed on each GPU")
    fraction: float | None = Field(None, gt=0, lt=1, description="share of one GPU's compute")
    mig: Text | None = Field(None, description="MIG profile, e.g. 3g.40gb")
    cpus: Annotated[int, WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 4096})
                    ] | ElasticCpus = Field(
        1, description="CPU cores, or {min, max} for an elastic job")
    memory_gib: float = Field(1.0, gt=0, le=65536)
    spread: Literal["one_node", "pack", "spread"] = Field(
        "pack", description="how GPUs may spread over nodes (Ray's STRICT_PACK, PACK, SPREAD)")
    # A CPU-only gang, as Slurm's --nodes with --cpus-per-task: N ranks, one per node, each
    # with ``cpus`` cores and ``memory_gib`` (Ray's STRICT_SPREAD). GPU gangs are asked for
    # with ``gpus`` and ``spread`` instead.
    nodes: int = Field(1, ge=1, le=1024, strict=True, description=(
        "CPU-only jobs: run as this many ranks on as many nodes, each with cpus cores and "
        "memory_gib GiB (torch.distributed gets MASTER_ADDR, RANK, WORLD_SIZE)"))

    @field_validator("gpus", mode="before")
    @classmethod
    def _count_or_range(cls, value: object) -> object:
        # One clear message instead of one per member of the union.
        if isinstance(value, dict):
            try:
                return ElasticGpus.model_validate(value)
            except ValidationError as exc:
                raise ValueError(describe(exc)) from None
        if isinstance(value, bool) or not isinstance(value, int | ElasticGpus):
            raise ValueError(f"must be a GPU count or {{min, max}}, got {type(value).__name__}")
        return value

    @field_validator("cpus", mode="before")
    @classmethod
    def _cores_or_range(cls, value: object) -> object:
        if isinstance(value, dict):
            try:
                return ElasticCpus.model_validate(value)
            except ValidationError as exc:
                raise ValueError(describe(exc)) from None
        if isinstance(value, bool) or not isinstance(value, int | ElasticCpus):
            raise ValueError(f"must be a core count or {{min, max}}, got {type(value).__name__}")
        if isinstance(value, int) and not 1 <= value <= 4096:
            raise ValueError(f"must be between 1 and 4096, got {value}")
        return value

    @field_validator("gpus")
    @classmethod
    def _count(cls, value: int | ElasticGpus) -> int | ElasticGpus:
        if isinstance(value, int) and not 0 <= value <= 1024:
            raise ValueError(f"must be between 0 and 1024, got {value}")
        return value

    @field_validator("gpu_kinds")
    @classmethod
    def _kinds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for name in value:
            try:
                names.append(get_kind(name).name)
            except KeyError as exc:
                raise ValueError(shown(exc.args[0], 300)) from None
        return tuple(names)

    @model_validator(mode="after")
    def _shapes(self) -> Resources:
        if self.fraction is not None and self.mig is not None:
            raise ValueError("give either fraction or mig, not both")
        if (self.fraction is not None or self.mig is not None) and self.max_gpus != 1:
            raise ValueError("fraction and mig apply to exactly one GPU: set gpus: 1")
        if self.mig is not None and not re.fullmatch(r"[1-7]g\.\d{1,4}gb", self.mig):
            raise ValueError(f"mig profile {shown(self.mig, 40)!r} is not of the form "
                             "<N>g.<M>gb")
        if self.nodes > 1:
            if self.max_gpus > 0 or self.fraction is not None or self.mig is not None:
                raise ValueError("nodes applies to CPU-only jobs; a GPU job spreads over "
                                 "nodes with gpus and spread")
            if isinstance(self.cpus, ElasticCpus):
                raise ValueError("nodes > 1 needs a fixed cpus count (cores per node)")
        return self

    @property
    def min_gpus(self) -> int:
        return self.gpus.min if isinstance(self.gpus, ElasticGpus) else self.gpus

    @property
    def max_gpus(self) -> int:
        return self.gpus.max if isinstance(self.gpus, ElasticGpus) else self.gpus

    @property
    def min_cpus(self) -> int:
        return self.cpus.min if isinstance(self.cpus, ElasticCpus) else self.cpus

    @property
    def max_cpus(self) -> int:
        return self.cpus.max if isinstance(self.cpus, ElasticCpus) else self.cpus

    @property
    def elastic(self) -> bool:
        """True when the job may be resized while it runs (GPUs or cores)."""
        return self.max_gpus > self.min_gpus or self.max_cpus > self.min_cpus


def gpu_share(res: Resources) -> float:
    """GPUs' worth one copy of ``res`` holds: a fraction counts as that much of a GPU, a
    MIG instance as its compute slices of 7."""
    if res.fraction is not None:
        return res.fraction
    if res.mig is not None:
        return int(res.mig.split("g.")[0]) / 7
    return float(res.max_gpus)


class Dataset(_Strict):
    path: PathText | None = Field(None, description="file or folder with the job's data")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="cache key; default: path")
    size_gib: float | None = Field(None, ge=0, le=MAX_SIZE_GIB, description=(
        "size of a dataset known only by name; a path's size is measured at submit"))

    @model_validator(mode="after")
    def _something(self) -> Dataset:
        if self.path is None and self.name is None:
            raise ValueError("give a path or a name")
        return self

    @property
    def key(self) -> str:
        return self.name or str(Path(self.path or "").resolve())


class Checkpoint(_Strict):
    signal: Text = "SIGTERM"
    path: PathText | None = None
    grace_seconds: float = Field(10.0, ge=0, le=3600)

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        if not hasattr(signal.Signals, name) or name in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"{shown(value, 40)!r} is not a catchable signal name (e.g. "
                             "SIGTERM, SIGUSR1)")
        return name


class JobSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    command: Annotated[tuple[Arg, ...], Sequence] = Field(
        min_length=1, max_length=4096, strict=False,
        description="argv; never run through a shell")
    env: dict[Text, Arg] = Field(default_factory=dict, max_length=1024)
    workdir: PathText | None = None
    workload: Text | None = Field(None, description="job class for profiles; default: the name")
    resources: Resources = Field(default_factory=lambda: Resources.model_validate({}))
    dataset: Dataset | None = None
    precision: Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8"] = "fp32"
    sparsity: Literal["dense", "2:4"] = "dense"
    priority: int = Field(0, ge=-1000, le=1000)
    checkpoint: Checkpoint = Field(default_factory=lambda: Checkpoint.model_validate({}))
    time_limit_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    team: str | None = Field(None, pattern=NAME_PATTERN, description=(
        "the team the job belongs to (default: 'default'); the service sets it from the token"))
    array_index: int | None = Field(None, ge=0, le=MAX_ARRAY_INDEX, strict=True, description=(
        "this job's index in a job array (submit --array sets it); the job reads it from "
        "SLICEBOX_ARRAY_INDEX"))
    # Dependencies, as Slurm's --dependency=afterany/afterok: ids of jobs already in the
    # store (admission checks; so no cycle can be made). See controller/dependencies.py.
    after: Annotated[tuple[JobId, ...], Sequence] = Field(
        (), strict=False, max_length=MAX_DEPENDENCIES, description=(
            "job ids: start only after these jobs have ended, whatever their result"))
    afterok: Annotated[tuple[JobId, ...], Sequence] = Field(
        (), strict=False, max_length=MAX_DEPENDENCIES, description=(
            "job ids: start only after these jobs have succeeded; if one fails or is "
            "cancelled, this job is cancelled"))
    # A service (kind: service) is not placed itself: its replicas are, each an ordinary
    # job with this spec's resources and `replica_of` set (see controller.services).
    kind: Literal["job", "service"] = Field("job", description=(
        "job: runs to completion; service: replicas behind a load balancer until cancelled"))
    service: ServiceSection | None = Field(None, description=(
        "kind: service only: port, health check, latency objective, replica bounds"))
    replica_of: ReplicaOf | None = Field(None, description=(
        "set by Slicebox on a service's replicas; a submitted spec may not set it"))

    @model_validator(mode="after")
    def _each_dependency_once(self) -> JobSpec:
        seen: set[str] = set()
        for field, ids in (("after", self.after), ("afterok", self.afterok)):
            for job_id in ids:
                if job_id in seen:
                    raise ValueError(f"{field}: job {job_id} is given twice (once is enough; "
                                     "afterok already waits for it to end)")
                seen.add(job_id)
        return self

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: object) -> object:
        if isinstance(value, str):
            if len(value) > MAX_EXEC_BYTES:
                raise ValueError(f"is {len(value)} characters long; at most {MAX_EXEC_BYTES}")
            bad = SHELL_METACHARACTERS.search(value)
            if bad:
                raise ValueError(
                    f"contains the shell metacharacter {bad.group()!r}; Slicebox never runs a "
                    "shell: give the command as a list of arguments")
            return tuple(shlex.split(value))
        return value

    @field_validator("command")
    @classmethod
    def _argv_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("the program name is empty")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"{shown(key, 60)!r} is not a valid environment variable name "
                                 "(letters, digits and _, not starting with a digit)")
            if key.startswith("SLICEBOX_") or key in ("CUDA_VISIBLE_DEVICES",):
                raise ValueError(f"{key} is set by Slicebox from the composition")
        return value

    @model_validator(mode="after")
    def _fits_exec(self) -> JobSpec:
        # execve fails with E2BIG past ARG_MAX: refuse now what could never start.
        size = sum(encoded_size(arg) + 1 for arg in self.command) + sum(
            encoded_size(k) + encoded_size(v) + 2 for k, v in self.env.items())
        if size > MAX_EXEC_BYTES:
            raise ValueError(f"command and env are {size} bytes together; at most "
                             f"{MAX_EXEC_BYTES}")
        return self

    @model_validator(mode="after")
    def _kind(self) -> JobSpec:
        if self.kind == "job":
            if self.service is not None:
                raise ValueError("service: only a spec with kind: service has this section")
            return self
        if self.service is None:
            raise ValueError("service: kind: service needs a service section (objective, "
                             "replica bounds)")
        if len(self.name) > MAX_SERVICE_NAME:
            raise ValueError(f"name: a service's name is at most {MAX_SERVICE_NAME} "
                             "characters (its replicas are named <name>-r<N>)")
        if self.replica_of is not None or self.array_index is not None:
            raise ValueError("kind: a service cannot be a replica or an array member")
        if self.time_limit_seconds is not None:
            raise ValueError("time_limit_seconds: a service runs until it is cancelled")
        if self.resources.elastic or self.resources.nodes > 1:
            raise ValueError("resources: a service's resources are one replica's, fixed "
                             "(it scales by replicas, not by resizing)")
        if self.after or self.afterok:
            raise ValueError("after: a service does not wait for jobs")
        self._check_shapes()
        return self

    def _check_shapes(self) -> None:
        """Each shape makes valid resources, and each is larger than the one before: no
        fewer cores, less of a GPU or (where both give it) less memory, and more cores or
        more of a GPU."""
        shapes = self.service.shapes if self.service else ()
        sizes = []
        for index in range(len(shapes)):
            try:
                res = self.shaped_resources(index)
            except ValidationError as exc:
                raise ValueError(f"service.shapes.{index}: {describe(exc)}") from None
            sizes.append((gpu_share(res), res.max_cpus))
        for index in range(1, len(sizes)):
            (small_gpu, small_cpus), (big_gpu, big_cpus) = sizes[index - 1], sizes[index]
            less_memory = None not in (shapes[index - 1].memory_gib, shapes[index].memory_gib) \
                and (shapes[index].memory_gib or 0) < (shapes[index - 1].memory_gib or 0)
            larger = big_gpu >= small_gpu and big_cpus >= small_cpus \
                and (big_gpu > small_gpu or big_cpus > small_cpus)
            if not larger or less_memory:
                raise ValueError(
                    f"service.shapes: shapes[{index}] ({shapes[index].describe()}) is not "
                    f"larger than shapes[{index - 1}] ({shapes[index - 1].describe()}); list "
                    "the shapes smallest first, each with more cpus or more of a GPU")

    def shaped_resources(self, shape: int) -> Resources:
        """A replica's resources on the service's ``shape``-th shape (the spec's own
        when it lists none)."""
        shapes = self.service.shapes if self.service is not None else ()
        if not shapes:
            return self.resources
        data = shapes[min(shape, len(shapes) - 1)].applied(
            self.resources.model_dump(mode="json"))
        return Resources.model_validate(data)

    @property
    def workload_class(self) -> str:
        return self.workload or self.name


def parse_spec(data: object, source: str = "job spec") -> JobSpec:
    """Validate already-loaded data; raise SpecError naming every bad field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: {describe(exc)}") from None
    except RecursionError:  # data built in Python, not read by read_yaml (which bounds depth)
        raise SpecError(f"{source}: nested too deeply") from None


def load_spec(path: str | Path) -> JobSpec:
    """Read a job YAML file, refusing unreadable, huge or non-YAML files with a clear reason."""
    path = Path(path)
    data = read_yaml(path, MAX_SPEC_BYTES, "a job spec", SpecError)
    return parse_spec(data, shown(path, 200))
