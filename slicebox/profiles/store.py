"""Where the profile table lives between runs: ``<state dir>/profiles.json``.

``slicebox bench`` writes its measurements here, the controller loads the file at start,
refines it from running jobs and saves it back when it stops.
"""

from __future__ import annotations

import logging
from pathlib import Path

from slicebox.profiles.base import ThroughputModel
from slicebox.profiles.table import ProfileTable

log = logging.getLogger(__name__)
FILENAME = "profiles.json"


def profiles_path(state_dir: Path) -> Path:
    return Path(state_dir) / FILENAME


def load_profiles(state_dir: Path) -> ProfileTable:
    """The saved table, or an empty one (estimates only). A corrupt file is reported and
    set aside, never fatal: profiles only make placement better, not possible."""
    path = profiles_path(state_dir)
    if not path.exists():
        return ProfileTable()
    try:
        return ProfileTable.from_json(path)
    except ValueError as exc:
        log.warning("ignoring unreadable profiles (%s); moved to %s.bad", exc, path)
        path.replace(path.with_suffix(".json.bad"))
        return ProfileTable()


def save_profiles(state_dir: Path, profiles: ThroughputModel) -> None:
    if isinstance(profiles, ProfileTable) and profiles.entries():
        profiles.to_json(profiles_path(state_dir))
