"""Durable state: SQLite (WAL) in the state directory by default, PostgreSQL by URL.

Nothing of a job lives only in memory: a controller may die at any moment and the next
one continues from what is here.
"""

from slicebox.store.leases import LeaseHeld, LeaseLost
from slicebox.store.records import (
    CompositionRecord,
    DatasetRecord,
    EventRecord,
    JobRecord,
    Lease,
    ProgressSample,
    StopRequest,
    UtilisationPoint,
)
from slicebox.store.store import Store
from slicebox.store.transitions import (
    LEGAL,
    IllegalTransition,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    UnknownJob,
)

__all__ = [
    "LEGAL", "CompositionRecord", "DatasetRecord", "EventRecord", "IllegalTransition",
    "JobRecord", "Lease", "LeaseHeld", "LeaseLost", "ProgressSample", "StopRequest", "Store",
    "StoreCorrupt", "StoreError", "StoreUnavailable", "UnknownJob", "UtilisationPoint",
]
