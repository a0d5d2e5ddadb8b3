"""Team quotas of a pool file: a guaranteed (nominal) share of each resource per team, and
how much more a team may borrow while others leave theirs idle.

This follows Kueue's ClusterQueue quotas (https://kueue.sigs.k8s.io/docs/concepts/cluster_queue/),
with every listed team a ClusterQueue of one cohort, the pool:

- ``nominalQuota`` "the quantity of this resource that is available for a ClusterQueue at
  a specific time": here a team's ``cpus``, ``gpus`` and ``memory_gib``. Only resources
  some team lists are governed (Kueue's ``coveredResources``); a governed resource a team
  does not list has a nominal quota of 0 for it (it may still borrow).
- ``borrowingLimit`` "the maximum amount of quota that this ClusterQueue is allowed to
  borrow from the unused nominal quota of other ClusterQueues in the same cohort"; absent
  means no limit, as in Kueue. Here ``borrowing_limit: {cpus: 2}`` (per resource).
- Teams not listed (and jobs without a team: the ``default`` team, unless listed) share
  one implicit queue, ``UNLISTED``, whose nominal quota is what no listed team claims
  (the pool's total less the sum of the listed nominal quotas) and which may borrow
  without limit. That is Kueue's cohort with one more ClusterQueue holding the rest.

``gpus`` is a count over every kind (``gpus: 4``) or per kind (``gpus: {H100: 2, L4: 1}``);
a team with per-kind quotas has the sum of them as its total. Fractional GPU shares count
as their share.

Untrusted input: every field bounded, team names follow the job spec's team pattern, and
the nominal quotas together may not claim more than the pool has (a guarantee that cannot
be honoured is refused, naming the resource).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slicebox.pool.kinds import get_kind

UNLISTED = "*"  # the implicit queue of every team the pool file does not list
MAX_TEAMS = 1024
MAX_QUOTA_CPUS = 1 << 22  # = files.MAX_POOL_CORES
MAX_QUOTA_GPUS = 131_072  # = files.MAX_POOL_GPUS
MAX_QUOTA_MEMORY_GIB = 1e12
TEAM_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # as a job spec's `team` (store.tokens)
CPUS, GPUS, MEMORY = "cpus", "gpus", "memory_gib"


def gpu_kind_key(kind: str) -> str:
    """The resource name of one GPU kind's quota."""
    return f"gpus:{kind}"


Amounts = Mapping[str, float]  # resource name (cpus, gpus, gpus:<kind>, memory_gib) -> amount


@dataclass(frozen=True)
class TeamQuota:
    """One team's nominal quota (every governed resource) and borrowing limit, by
    resource name. A resource absent from ``borrowing_limit`` is borrowed without limit."""

    nominal: Amounts
    borrowing_limit: Amounts = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Quotas:
    """Every listed team's quota (``UNLISTED`` included once built by :func:`build`).
    Empty: nobody has a quota, every job is the unlisted queue's, nobody is preempted."""

    teams: Mapping[str, TeamQuota] = field(default_factory=lambda: MappingProxyType({}))
    tracked: frozenset[str] = frozenset()  # the resources quotas govern

    def queue_of(self, team: str) -> str:
        """The quota a job of ``team`` counts against."""
        return team if team in self.teams and team != UNLISTED else UNLISTED

    def quota(self, queue: str) -> TeamQuota:
        return self.teams.get(queue) or TeamQuota(MappingProxyType({}))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              str_max_length=64)


GpuAmount = int | float | dict[str, float]


class ResourcesModel(_Strict):
    cpus: int = Field(0, ge=0, le=MAX_QUOTA_CPUS)
    gpus: GpuAmount = 0
    memory_gib: float = Field(0.0, ge=0, le=MAX_QUOTA_MEMORY_GIB)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: object) -> object:
        # Before pydantic's own parsing, which would read `true` as 1 GPU.
        if isinstance(value, dict):
            if len(value) > 64:
                raise ValueError(f"{len(value)} GPU kinds; at most 64")
            out: dict[str, float] = {}
            for kind, count in value.items():
                try:
                    name = get_kind(str(kind)).name
                except KeyError as exc:
                    raise ValueError(exc.args[0]) from None
                if name in out:
                    raise ValueError(f"{name!r} is listed twice")
                _check_gpu_count(count, f"{name}: ")
                out[name] = float(count)
            return out
        _check_gpu_count(value, "")
        return value

    def amounts(self) -> dict[str, float]:
        out = {CPUS: float(self.cpus), MEMORY: float(self.memory_gib)}
        if isinstance(self.gpus, dict):
            out.update({gpu_kind_key(k): v for k, v in self.gpus.items()})
            out[GPUS] = sum(self.gpus.values())
        else:
            out[GPUS] = float(self.gpus)
        return out

    def listed(self) -> dict[str, float]:
        """Only the resources written (for a borrowing limit: absent = unlimited)."""
        full = self.amounts()
        return {k: v for k, v in full.items() if k in self.model_fields_set
                or (k.startswith("gpus") and GPUS in self.model_fields_set)}


def _check_gpu_count(count: object, where: str) -> None:
    if isinstance(count, bool) or not isinstance(count, int | float):
        raise ValueError(f"{where}a GPU count must be a number, got {str(count)[:40]!r}")
    if not 0 <= count <= MAX_QUOTA_GPUS or count != count:
        raise ValueError(f"{where}a GPU count must be between 0 and {MAX_QUOTA_GPUS}, "
                         f"got {count}")


class TeamQuotaModel(ResourcesModel):
    borrowing_limit: ResourcesModel | None = None


def check_team_names(teams: Mapping[str, object]) -> None:
    """Refuse a team name a job could not carry (the spec's team pattern)."""
    if len(teams) > MAX_TEAMS:
        raise ValueError(f"{len(teams)} teams; at most {MAX_TEAMS}")
    for name in teams:
        if not isinstance(name, str) or not re.fullmatch(TEAM_PATTERN, name):
            raise ValueError(f"{str(name)[:60]!r} is not a team name (lower-case letters, "
                             "digits, '.', '_' and '-', at most 63)")


def build(listed: Mapping[str, TeamQuotaModel], totals: Amounts) -> Quotas:
    """Quotas of the listed teams plus ``UNLISTED`` (what they leave), checked against the
    pool's ``totals`` (resource name -> amount). Raises ValueError naming the resource.

    Only resources some team lists are governed (Kueue's covered resources, shared by the
    cohort): a pool file that lists only ``cpus`` leaves memory and GPUs to placement."""
    written = {name: team.listed() for name, team in listed.items()}
    tracked = frozenset(k for amounts in written.values() for k in amounts)
    teams: dict[str, TeamQuota] = {}
    claimed: dict[str, float] = {}
    for name, team in sorted(listed.items()):
        nominal = {key: written[name].get(key, 0.0) for key in sorted(tracked)}
        for key, amount in nominal.items():
            claimed[key] = claimed.get(key, 0.0) + amount
        limit = team.borrowing_limit.listed() if team.borrowing_limit is not None else {}
        teams[name] = TeamQuota(MappingProxyType(nominal), MappingProxyType(limit))
    # Per-kind first: the most specific resource short is the one to name.
    for key, amount in sorted(claimed.items(), key=lambda item: (item[0] == GPUS, item[0])):
        have = totals.get(key, 0.0)
        if amount > have + 1e-9:
            what = key.replace("gpus:", "GPUs of kind ").replace("gpus", "GPUs")
            raise ValueError(f"the teams' nominal quotas claim {amount:g} {what}; the pool "
                             f"has {have:g}")
    rest = {key: max(totals.get(key, 0.0) - claimed.get(key, 0.0), 0.0)
            for key in sorted(tracked)}
    teams[UNLISTED] = TeamQuota(MappingProxyType(rest))
    return Quotas(MappingProxyType(teams), tracked)


NO_QUOTAS = Quotas()
