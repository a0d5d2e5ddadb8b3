"""The ``service:`` section of a spec with ``kind: service``, and what a replica carries.

A service is a model server that runs until it is cancelled: Slicebox starts between
``min_replicas`` and ``max_replicas`` copies of its command (each an ordinary job on its own
slice, sized by the spec's ``resources``), puts a load balancer in front of them on
``host:port``, and sets the count from the measured request rate and latency against
``objective``. Like the rest of the spec this is untrusted input: strict types, every
number bounded, no field that is not listed.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slicebox.hours import Window

MAX_REPLICAS = 64  # per service; a larger fleet is several services behind another balancer
MAX_REPLICA_INDEX = 999_999  # the N of `<service>-r<N>`: 6 digits keep the name short
MAX_SERVICE_NAME = 55  # so that `<name>-r<N>` is still a valid job name (63 characters)
SERVICE_PORT_ENV = "SLICEBOX_SERVICE_PORT"  # where a replica reads the port it must serve on
REPLICA_OF_ID = r"^[0-9a-f]{8}$"  # a service's id (as a job's: 4 random bytes in hex)
MAX_SHAPES = 8  # candidate replica shapes per service


class _Strict(BaseModel):
    # As spec.job's: no coercion, no unknown fields, finite numbers.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Objective(_Strict):
    p99_ms: float = Field(gt=0, le=600_000, description=(
        "the 99th-percentile latency each request should stay under, in milliseconds"))
    rate_rps: float | None = Field(None, gt=0, le=1_000_000, description=(
        "the request rate the objective is promised at (requests per second); informative"))


class Shape(_Strict):
    """One candidate replica shape: what each replica gets instead of the spec's
    ``resources``: cores, memory, and its GPU share (whole GPUs, a ``fraction`` of one, or
    a ``mig`` instance). What a shape leaves out is the spec's; a shape that gives a GPU
    share replaces the spec's whole GPU share (``gpus: 1`` after ``mig: 1g.10gb`` is a
    whole card)."""

    cpus: int | None = Field(None, ge=1, le=4096, description="CPU cores per replica")
    memory_gib: float | None = Field(None, gt=0, le=65536, description=(
        "memory per replica (default: the spec's resources.memory_gib)"))
    gpus: int | None = Field(None, ge=0, le=64, description="whole GPUs per replica")
    fraction: float | None = Field(None, gt=0, lt=1, description="share of one GPU's compute")
    mig: str | None = Field(None, pattern=r"^[1-7]g\.\d{1,4}gb$", description=(
        "MIG profile per replica, e.g. 1g.10gb"))

    @model_validator(mode="after")
    def _one_share(self) -> Shape:
        if self.cpus is None and not self.gives_gpu_share:
            raise ValueError("a shape gives cpus, gpus, fraction or mig")
        if self.fraction is not None and self.mig is not None:
            raise ValueError("give either fraction or mig, not both")
        if (self.fraction is not None or self.mig is not None) and self.gpus not in (None, 1):
            raise ValueError("fraction and mig are of one GPU: leave gpus out")
        return self

    @property
    def gives_gpu_share(self) -> bool:
        return self.gpus is not None or self.fraction is not None or self.mig is not None

    def applied(self, resources: dict[str, object]) -> dict[str, object]:
        """``resources`` (a spec's, as data) with this shape's values in place."""
        out = dict(resources)
        if self.cpus is not None:
            out["cpus"] = self.cpus
        if self.memory_gib is not None:
            out["memory_gib"] = self.memory_gib
        if self.gives_gpu_share:
            one_gpu = self.fraction is not None or self.mig is not None
            out.update(gpus=1 if one_gpu else self.gpus, fraction=self.fraction, mig=self.mig)
        return out

    def describe(self) -> str:
        parts = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                 for name, value in (("cpus", self.cpus), ("gpus", self.gpus),
                                     ("fraction", self.fraction), ("mig", self.mig),
                                     ("memory_gib", self.memory_gib)) if value is not None]
        return ",".join(parts)


class ServiceSection(_Strict):
    host: Annotated[str, Field(max_length=64)] = Field("127.0.0.1", description=(
        "the address the load balancer listens on (an IP address; 0.0.0.0 for every "
        "interface)"))
    port: int = Field(0, ge=0, le=65535, description=(
        "the load balancer's port (0: a free port, kept across controller restarts)"))
    health_path: str = Field("/health", pattern=r"^/[A-Za-z0-9._~/-]{0,254}$", description=(
        "the path every replica answers with 200 once it can serve"))
    health_interval_s: float = Field(1.0, ge=0.1, le=60, description=(
        "seconds between health checks; a replica failing one gets no traffic at once"))
    objective: Objective
    min_replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    replica_capacity_rps: float | None = Field(None, gt=0, le=1_000_000, description=(
        "requests per second one replica serves within the objective (default: measured "
        "from the service's own traffic)"))
    schedule: tuple[Window, ...] = Field((), strict=False, max_length=24, description=(
        "windows of the day in which the service keeps at least a share of the pool"))
    shapes: tuple[Shape, ...] = Field((), strict=False, max_length=MAX_SHAPES, description=(
        "candidate replica shapes, smallest first: replicas start on the first, and the "
        "service moves to the next when its measured p99 breaks the objective even at "
        "low load per replica"))

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(f"{value[:64]!r} is not an IP address (e.g. 127.0.0.1)") from None

    @field_validator("port")
    @classmethod
    def _unprivileged(cls, value: int) -> int:
        if 0 < value < 1024:
            raise ValueError(f"port {value} is privileged; use 0 (any free port) or "
                             "1024..65535")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> ServiceSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is larger than "
                             f"max_replicas ({self.max_replicas})")
        if self.shapes and self.replica_capacity_rps is not None:
            raise ValueError("give shapes or replica_capacity_rps, not both (a capacity is "
                             "one shape's; with shapes it is measured per shape)")
        return self


class ReplicaOf(_Strict):
    """Set by Slicebox (never by a user: admission refuses it) on each replica's job."""

    service: str = Field(pattern=REPLICA_OF_ID, description="the service's id")
    index: int = Field(ge=1, le=MAX_REPLICA_INDEX, description="N in <service>-r<N>")
    port: int = Field(ge=1024, le=65535, description=(
        f"the port this replica serves on (its {SERVICE_PORT_ENV})"))
    shape: int = Field(0, ge=0, lt=MAX_SHAPES, description=(
        "the index in the service's shapes this replica was started on (0 without shapes)"))
