"""Windows of the day that hold a share of the pool for services ("serving by day").

One model for both places a window is given: a service's own ``service.schedule`` (that
service keeps at least the share) and a pool file's ``service_hours`` or ``slicebox up
--service-hours`` (the services together keep at least the share; training gets the
rest). Hours are the controller's local time. Untrusted input: strict and bounded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slicebox.errors import InputError
from slicebox.untrusted import describe

MAX_WINDOWS = 24


class Window(BaseModel):
    """From ``hours`` (local time of the controller, ``HH:MM-HH:MM``; a window that ends
    before it starts runs over midnight), at least ``at_least`` of the pool (its GPUs, or
    its cores for CPU-only services) is kept in service replicas."""

    # As the spec's models: no coercion, no unknown fields, finite numbers.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    hours: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$",
                       description="HH:MM-HH:MM, e.g. 08:00-20:00")
    at_least: float = Field(gt=0, le=1, description="share of the pool, e.g. 0.5")

    @field_validator("hours")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        start, end = value.split("-")
        if start == end:
            raise ValueError(f"{value!r} is an empty window (give e.g. 08:00-20:00)")
        if end > "24:00":
            raise ValueError(f"{value!r}: a window ends at 24:00 at the latest")
        return value

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after midnight."""
        start, end = (int(h) * 60 + int(m) for h, m in
                      (part.split(":") for part in self.hours.split("-")))
        return start, end

    def contains(self, minute_of_day: int) -> bool:
        start, end = self.minutes()
        if start < end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # over midnight


def share_now(windows: Sequence[Window], moment: time.struct_time) -> float:
    """The largest share the windows hold at ``moment`` (0 outside all of them)."""
    minute = moment.tm_hour * 60 + moment.tm_min
    return max((w.at_least for w in windows if w.contains(minute)), default=0.0)


def parse_window(text: str) -> Window:
    """``HH:MM-HH:MM=SHARE`` (the CLI's form), e.g. ``08:00-20:00=0.5``."""
    hours, sep, share = text.partition("=")
    if not sep:
        raise InputError(f"{text[:60]!r}: give HH:MM-HH:MM=SHARE, e.g. 08:00-20:00=0.5")
    try:
        at_least = float(share)
    except ValueError:
        raise InputError(f"{text[:60]!r}: the share {share[:20]!r} is not a number "
                         "(e.g. 0.5 for half the pool)") from None
    try:
        return Window(hours=hours, at_least=at_least)
    except ValidationError as exc:
        raise InputError(f"{text[:60]!r}: {describe(exc)}") from None
