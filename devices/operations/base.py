"""What every step of an operation shares: the settings, the wire names, ids in chunks.

The steps themselves live beside this module: ``preview`` (what an action would do),
``starting`` (the one transaction that starts it, cancel, retry), ``dispatch`` (the
worker's claims), ``results`` (the gateways' answers), ``finish`` (closing operations
exactly once), ``reconciling`` (the reconciler's pass) and ``unenrollment``.
"""

import time
import uuid
from datetime import timedelta

from django.conf import settings

from devices.ingest import Changes
from devices.lifecycle import Action
from devices.models import BulkOperation
from gateway.codes import OpKind, ResultCode
from portal import live

# The actions a bulk operation runs, and what each is called on the wire.
WIRE_KIND = {
    Action.PROVISION: OpKind.PROVISION,
    Action.DEPROVISION: OpKind.DEPROVISION,
    Action.REPROVISION: OpKind.REPROVISION,
    Action.ENROLL: OpKind.ENROLL,
    Action.UNENROLL: OpKind.UNENROLL,
}
# What users pick in the widgets and the API; enrolling has its own app, and the
# unenrollment follows a deletion by itself.
BULK_ACTIONS = (Action.PROVISION, Action.DEPROVISION, Action.REPROVISION)
# The operations that tell the device its name.
NAMED_KINDS = frozenset({Action.PROVISION, Action.REPROVISION, Action.ENROLL})

# Answers worth another try: the device or the link may do better in a moment.
RETRYABLE = frozenset({ResultCode.BUSY, ResultCode.TIMEOUT, ResultCode.NO_ADAPTER})
CHUNK = 5000  # ids per IN (...) clause
SKIPPED_KEPT = 1000  # a bulk operation keeps this many skipped devices with reasons


def config():
    return settings.OPERATIONS


def chunks(ids, size=CHUNK):
    """``ids`` in lists of at most ``size``: one IN (...) clause each."""
    ids = list(ids)
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def wire_id(uid: uuid.UUID, generation: int) -> str:
    return f"{uid.hex}-{generation}"


def parse_wire_id(op_id: str) -> tuple[uuid.UUID, int] | None:
    head, _, generation = op_id.rpartition("-")
    try:
        return uuid.UUID(hex=head), int(generation)
    except ValueError:
        return None


def backoff(attempts: int) -> timedelta:
    first, most = config()["BACKOFF_S"]
    return timedelta(seconds=min(most, first * 2 ** max(attempts - 1, 0)))


def progress(bulk: BulkOperation) -> dict:
    return {
        "id": bulk.pk,
        "total": bulk.total,
        "done": bulk.done,
        "failed": bulk.failed,
        "cancelled": bulk.cancelled,
        "running": bulk.is_running,
    }


def push(changes: Changes) -> None:
    """Send what a change outside the bridge did to the browsers (the bridge pushes its own)."""
    at = int(time.time() * 1000)
    for org, rows in changes.devices.items():
        live.publish(org, "devices", rows=list(rows.values()), at=at)
    for org, items in changes.extra.items():
        for kind, payload in items:
            live.publish(org, kind, **payload)
