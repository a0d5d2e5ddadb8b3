"""The controller lease: at most one controller drives a store at a time.

The holder renews a heartbeat every round. A new controller may take over when the
heartbeat is older than the lease's time-to-live, or at once when it can tell the holder's
process is gone (same machine, pid dead): a controller killed with -9 never releases.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from slicebox.store.records import Lease
from slicebox.store.schema import KeyValueRow
from slicebox.store.transitions import StoreError

KEY = "controller"


class LeaseHeld(StoreError):
    """Another controller is running against this store."""


class LeaseLost(StoreError):
    """This controller's lease was taken over; it must stop acting."""


def current(s: Session) -> Lease | None:
    row = s.get(KeyValueRow, KEY, with_for_update=True)
    if row is None:
        return None
    data = json.loads(row.value)
    if not data.get("id"):
        return None
    return Lease(data["id"], float(data["heartbeat"]))


def acquire(s: Session, controller_id: str, ttl: float, now: float,
            holder_alive: Callable[[str], bool] | None) -> Lease:
    _ensure_row(s)
    held = current(s)
    if held is not None and held.controller_id != controller_id:
        age = now - held.heartbeat
        alive = holder_alive(held.controller_id) if holder_alive is not None else True
        if age < ttl and alive:
            raise LeaseHeld(f"controller {held.controller_id} holds this store (heartbeat "
                            f"{age:.1f}s ago); stop it first, or wait {ttl - age:.0f}s")
    _write(s, controller_id, now)
    return Lease(controller_id, now)


def renew(s: Session, controller_id: str, now: float) -> None:
    held = current(s)
    if held is not None and held.controller_id != controller_id:
        raise LeaseLost(f"controller {held.controller_id} has taken over this store")
    _write(s, controller_id, now)


def release(s: Session, controller_id: str) -> None:
    held = current(s)
    if held is not None and held.controller_id == controller_id:
        _write(s, "", 0.0)


def _ensure_row(s: Session) -> None:
    """On PostgreSQL, make sure the lease row exists before locking it: two controllers
    starting on a store without one would both find nothing to lock and both insert (one
    then fails on the key). SQLite needs nothing: ``BEGIN IMMEDIATE`` serialises writers."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(pg_insert(KeyValueRow)
                  .values(key=KEY, value=json.dumps({"id": "", "heartbeat": 0.0}), updated_at=0.0)
                  .on_conflict_do_nothing(index_elements=[KeyValueRow.key]))


def _write(s: Session, controller_id: str, now: float) -> None:
    value = json.dumps({"id": controller_id, "heartbeat": now})
    row = s.get(KeyValueRow, KEY)
    if row is None:
        s.add(KeyValueRow(key=KEY, value=value, updated_at=now))
    else:
        row.value, row.updated_at = value, now
