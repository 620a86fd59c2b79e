"""Operations: from a user's click to every device's outcome (DESIGN.md, "One action").

One module per step, each readable on its own:

- ``preview``: what an action would do — eligible devices, the skipped ones with a
  reason each, seats, gateways (``plan``).
- ``starting``: one transaction — lock, reserve seats, move devices, write the bulk
  operation and one Operation per device; jobs after commit (``start``), and the
  user's other buttons (``cancel``, ``retry_failed``).
- ``dispatch``: the worker's side — the jobs to enqueue, the claims they make, the
  command items they publish.
- ``results``: the bridge's side — results from gateways (``complete``).
- ``finish``: closing operations exactly once under races (claim tokens), and the
  ``FINISH_HOOKS`` through which other apps follow outcomes.
- ``reconciling``: re-send what was not answered, give up what waited too long.
- ``unenrollment``: deleted devices leave management and are told so when they can be.

Callers use this package's names (``operations.start(...)``); the modules are how it
is kept small, not an interface.
"""

from devices.operations.base import (
    BULK_ACTIONS,
    SKIPPED_KEPT,
    WIRE_KIND,
    chunks,
    parse_wire_id,
    progress,
    push,
    wire_id,
)
from devices.operations.dispatch import (
    claim_for_dispatch,
    command_items,
    dispatch_waiting,
    enqueue_dispatch,
    unclaim,
)
from devices.operations.finish import FINISH_HOOKS
from devices.operations.preview import NO_GATEWAY, NOT_FOUND, Plan, plan
from devices.operations.reconciling import Reconciled, open_counts, reconcile
from devices.operations.results import complete
from devices.operations.starting import NothingToDo, cancel, retry_failed, start
from devices.operations.unenrollment import delete_devices, gateways_back

__all__ = [
    "BULK_ACTIONS",
    "FINISH_HOOKS",
    "NO_GATEWAY",
    "NOT_FOUND",
    "SKIPPED_KEPT",
    "WIRE_KIND",
    "NothingToDo",
    "Plan",
    "Reconciled",
    "cancel",
    "chunks",
    "claim_for_dispatch",
    "command_items",
    "complete",
    "delete_devices",
    "dispatch_waiting",
    "enqueue_dispatch",
    "gateways_back",
    "open_counts",
    "parse_wire_id",
    "plan",
    "progress",
    "push",
    "reconcile",
    "retry_failed",
    "start",
    "unclaim",
    "wire_id",
]
