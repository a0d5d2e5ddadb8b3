"""The controller: the loop that drives one store (``loop``), starting jobs through their
data staging (``staging``), taking jobs over after a restart (``reconcile``), the acts on
single jobs and the guard that keeps one job's trouble to that job (``actions``).

``from slicebox.controller import Controller, submit_file, submit_spec`` is the API.
"""

from slicebox.controller.actions import RoundReport
from slicebox.controller.identity import controller_id, holder_alive
from slicebox.controller.loop import Controller
from slicebox.controller.outcome import MAX_LOST_ATTEMPTS, outcome
from slicebox.controller.submit import submit_file, submit_spec
from slicebox.controller.views import ACTIVE, WAITING, tracking_params

__all__ = [
    "ACTIVE", "MAX_LOST_ATTEMPTS", "WAITING", "Controller", "RoundReport", "controller_id",
    "holder_alive", "outcome", "submit_file", "submit_spec", "tracking_params",
]
