"""Closing operations, exactly once, whoever gets there first: the bridge, the reconciler, cancel.

Every change of an operation's state is a conditional UPDATE that stamps a fresh
``claim`` token and then reads back what it claimed, so the bridge, the jobs and the
reconciler can race on the same rows and each operation is still finished exactly
once — which keeps the bulk counters and the license seats exact without counting rows.
"""

import uuid
from collections import Counter, defaultdict
from datetime import datetime

from django.db.models import Case, CharField, F, Q, Value, When

from devices import lifecycle
from devices.choices import OPEN_OPERATION_STATES, OperationState
from devices.ingest import Changes
from devices.models import BulkOperation, Device, Operation
from devices.operations.base import chunks, progress
from portal import audit

# Called inside ``finish``'s transaction with (state, rows, now), rows being the
# operations just closed (id, bulk_id, device_id, kind, from_state, organization_id,
# code, error): other apps follow outcomes here (the enrollment records) without this
# package knowing them. A hook costs a constant number of queries per call, however
# many rows and however many different reasons they carry.
FINISH_HOOKS: list = []

_OUTCOME_FIELD = {
    OperationState.DONE: "done",
    OperationState.FAILED: "failed",
    OperationState.CANCELLED: "cancelled",
}


def finish(
    filters: Q,
    state: str,
    now: datetime,
    changes: Changes | None,
    *,
    code: str = "",
    error: str = "",
    outcomes: dict[int, tuple[str, str]] | None = None,
) -> int:
    """Close the open operations matching ``filters``; advance counters and devices.

    ``code`` and ``error`` say why, for every row; ``outcomes`` (operation id → (code,
    error)) says it per row instead — a gateway's batch of failures, each with its own
    reason, is still one UPDATE. The claim token makes this exact under races: only
    the rows this UPDATE closed are read back, counted, and have their device moved.
    """
    token = uuid.uuid4()
    if outcomes:
        code, error = _per_row(outcomes, 0), _per_row(outcomes, 1)
    closed = Operation.objects.filter(filters, state__in=OPEN_OPERATION_STATES).update(
        state=state, claim=token, finished_at=now, code=code, error=error
    )
    if not closed:
        return 0
    rows = list(
        Operation.objects.filter(claim=token).values(
            "id", "bulk_id", "device_id", "kind", "from_state", "organization_id", "code", "error"
        )
    )
    per_bulk = Counter(r["bulk_id"] for r in rows)
    counter = _OUTCOME_FIELD[state]
    for bulk_id, n in per_bulk.items():
        BulkOperation.objects.filter(pk=bulk_id).update(**{counter: F(counter) + n})
    device_ids = [r["device_id"] for r in rows]
    if state == OperationState.CANCELLED:
        undo = defaultdict(list)
        for r in rows:
            undo[(r["kind"], r["from_state"])].append(r["device_id"])
        for (kind, from_state), ids in undo.items():
            for chunk in chunks(ids):
                lifecycle.undo_bulk(Device.objects.filter(pk__in=chunk), kind, from_state)
    else:
        by_action = defaultdict(list)
        for r in rows:
            action = lifecycle.outcome(r["kind"], ok=state == OperationState.DONE)
            if action:
                by_action[action].append(r["device_id"])
        for action, ids in by_action.items():
            for chunk in chunks(ids):
                lifecycle.apply_bulk(Device.objects.filter(pk__in=chunk), action)
    for hook in FINISH_HOOKS:
        hook(state, rows, now)
    _close_bulks(per_bulk, now)
    if changes is not None:
        _report(device_ids, per_bulk, changes)
    return closed


def _per_row(outcomes: dict[int, tuple[str, str]], index: int) -> Case:
    """One CASE for a column: a WHEN per distinct value, each naming its rows."""
    by_value = defaultdict(list)
    for pk, values in outcomes.items():
        by_value[values[index]].append(pk)
    whens = [When(pk__in=ids, then=Value(value)) for value, ids in by_value.items()]
    return Case(*whens, default=Value(""), output_field=CharField())


def _close_bulks(bulk_ids, now) -> None:
    finished = F("done") + F("failed") + F("cancelled")
    if BulkOperation.objects.filter(
        pk__in=list(bulk_ids), finished_at__isnull=True, total__lte=finished
    ).update(finished_at=now):
        audit.bulks_finished(BulkOperation.objects.filter(pk__in=list(bulk_ids), finished_at=now))


def _report(device_ids, bulk_ids, changes: Changes) -> None:
    """Rows and progress for the browsers: two queries, whatever the batch size."""
    for chunk in chunks(device_ids):
        for row in Device.objects.filter(pk__in=chunk).values(
            "id", "organization_id", "state", "serial_number"
        ):
            changes.device_row(
                row["organization_id"], row["id"], row["state"], row["serial_number"]
            )
    for bulk in BulkOperation.objects.filter(pk__in=list(bulk_ids)):
        changes.extra[bulk.organization_id].append(("operation", progress(bulk)))


def requeue(filters: Q, now: datetime, *, next_attempt_at, bump_generation: bool, **fields) -> int:
    """Sent operations back to the queue (a retry, or a re-send under the same id)."""
    updates = {"state": OperationState.QUEUED, "next_attempt_at": next_attempt_at, **fields}
    if bump_generation:
        updates["generation"] = F("generation") + 1
    return Operation.objects.filter(filters, state=OperationState.SENT).update(
        claim=None, deadline=None, **updates
    )
