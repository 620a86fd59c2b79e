"""Operations: from a user's click to every device's outcome (DESIGN.md, "One action").

The database is the source of truth; Redis only carries jobs. Every change of an
operation's state is a conditional UPDATE that stamps a fresh ``claim`` token and then
reads back what it claimed, so the bridge, the jobs and the reconciler can race on
the same rows and each operation is still finished exactly once — which keeps the
bulk counters and the license seats exact without counting rows.

- ``plan``: what an action would do (the preview) — eligible devices, the skipped
  ones with a reason each, seats, gateways.
- ``start``: one transaction — lock, reserve seats, move devices, write the bulk
  operation and one Operation per device; jobs are enqueued after commit, one per
  gateway.
- ``claim_for_dispatch``: the worker's side (``devices.jobs``).
- ``complete``: the bridge's side — results from gateways.
- ``reconcile``: re-send what was not answered, give up what waited too long.
"""

import json
import logging
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from devices import lifecycle
from devices.choices import DeviceState
from devices.ingest import Changes, GatewayRef
from devices.lifecycle import LICENSED_STATES, Action
from devices.models import (
    OPEN_OPERATION_STATES,
    BulkOperation,
    Device,
    Gateway,
    Operation,
    OperationState,
)
from gateway.codes import DeviceLinkState, OpKind, ResultCode
from licensing import capacity
from portal import audit
from portal.choices import AuditOutcome

log = logging.getLogger(__name__)

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
# Called inside ``_finish``'s transaction with (state, rows, code, error), rows being the
# operations just closed (id, kind, device_id, ...): other apps follow outcomes here
# (the enrollment records) without this module knowing them.
FINISH_HOOKS: list = []

# Answers worth another try: the device or the link may do better in a moment.
RETRYABLE = frozenset({ResultCode.BUSY, ResultCode.TIMEOUT, ResultCode.NO_ADAPTER})
CHUNK = 5000  # ids per IN (...) clause
SKIPPED_KEPT = 1000  # a bulk operation keeps this many skipped devices with reasons

NO_GATEWAY = "It has no gateway to reach it through."
NOT_FOUND = "No such device in this organization."
PROVISIONED_ELSEWHERE = (
    "It says it is provisioned already, but not by this portal: reprovision it to give it "
    "this portal's configuration."
)


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


def takes_seat(from_state: str, action: str) -> bool:
    return (
        from_state not in LICENSED_STATES
        and lifecycle.next_state(from_state, action) in LICENSED_STATES
    )


# -- the preview ---------------------------------------------------------------------


@dataclass
class GatewayShare:
    id: int
    name: str
    online: bool
    devices: int = 0


@dataclass
class Plan:
    action: str
    requested: int = 0
    eligible: list[dict] = field(default_factory=list)  # id, serial_number, state, gateway_id
    skipped: list[dict] = field(default_factory=list)  # id, serial, reason
    gateways: list[GatewayShare] = field(default_factory=list)
    seats_needed: int = 0
    seats_free: int | None = None
    seats_total: int = 0

    @property
    def waiting(self) -> int:
        """Eligible devices whose gateway is offline: they wait, they do not fail."""
        return sum(g.devices for g in self.gateways if not g.online)

    @property
    def over_capacity(self) -> bool:
        return self.seats_free is not None and self.seats_needed > self.seats_free

    @property
    def seats_left(self) -> int | None:
        return None if self.seats_free is None else self.seats_free - self.seats_needed

    @property
    def skipped_reasons(self) -> list[tuple[str, int]]:
        return Counter(s["reason"] for s in self.skipped).most_common()


def plan(organization, action: str, devices, *, lock: bool = False, requested_ids=()) -> Plan:
    """What ``action`` on ``devices`` (a queryset already scoped) would do; three queries.

    ``requested_ids``: the ids the user named; those not in ``devices`` (unknown, or of
    another organization — indistinguishable on purpose) are skipped with a reason.
    """
    if action not in WIRE_KIND:
        raise ValueError(f"{action!r} is not a bulk action")
    rows = devices.order_by("pk")
    if lock:
        # NO KEY: events keep flowing — inserting a DeviceEvent takes a KEY SHARE lock
        # on its device (the foreign key check), which a plain FOR UPDATE would block.
        rows = rows.select_for_update(no_key=True)
    rows = list(rows.values("id", "serial_number", "state", "gateway_id", "reported_state"))
    result = Plan(action=action, requested=max(len(rows), len(set(requested_ids))))
    found = {row["id"] for row in rows}
    for pk in dict.fromkeys(requested_ids):
        if pk not in found:
            result.skipped.append({"id": pk, "serial": f"#{pk}", "reason": NOT_FOUND})
    by_gateway: Counter = Counter()
    for row in rows:
        reason = lifecycle.reason_forbidden(row["state"], action)
        if reason is None and row["gateway_id"] is None:
            reason = NO_GATEWAY
        if (
            reason is None
            and action == Action.PROVISION
            and row["state"] == DeviceState.DISCOVERED
            and row["reported_state"] == DeviceLinkState.PROVISIONED
        ):
            reason = PROVISIONED_ELSEWHERE
        if reason:
            result.skipped.append(
                {"id": row["id"], "serial": row["serial_number"], "reason": reason}
            )
            continue
        result.eligible.append(row)
        by_gateway[row["gateway_id"]] += 1
        result.seats_needed += takes_seat(row["state"], action)
    gateways = Gateway.objects.filter(pk__in=by_gateway).values_list("id", "name", "is_online")
    result.gateways = sorted(
        (GatewayShare(gid, name, online, by_gateway[gid]) for gid, name, online in gateways),
        key=lambda g: (-g.devices, g.name),
    )
    if result.seats_needed:
        usage = capacity.usage(organization)
        result.seats_free, result.seats_total = usage.free, usage.total
    return result


# -- starting ------------------------------------------------------------------------


class NothingToDo(Exception):
    """No device of the request may take the action; ``plan`` says why for each."""

    def __init__(self, plan: Plan):
        self.plan = plan
        reasons = "; ".join(f"{n} × {reason}" for reason, n in plan.skipped_reasons[:3])
        super().__init__(f"None of the devices can take this action. {reasons}".strip())


def start(
    organization, user, action: str, devices, target: str, *, requested_ids=(), params=None
) -> tuple[BulkOperation, Plan]:
    """One transaction: lock the devices, reserve seats, move them, write the operations.

    ``params``: device id → extra parameters for the gateway (stored encrypted).
    Raises ``capacity.CapacityExceeded`` (nothing changes) or ``NothingToDo``.
    """
    params = params or {}
    now = timezone.now()
    cfg = config()
    with transaction.atomic():
        the_plan = plan(organization, action, devices, lock=True, requested_ids=requested_ids)
        if not the_plan.eligible:
            raise NothingToDo(the_plan)
        if the_plan.seats_needed:
            capacity.reserve(organization, the_plan.seats_needed)
        bulk = BulkOperation.objects.create(
            organization=organization,
            kind=action,
            target=target[:255],
            created_by=user if getattr(user, "is_authenticated", False) else None,
            total=len(the_plan.eligible),
            skipped=the_plan.skipped[:SKIPPED_KEPT],
        )
        by_state = defaultdict(list)
        for row in the_plan.eligible:
            by_state[row["state"]].append(row["id"])
        for state, ids in by_state.items():
            for chunk in chunks(ids):
                moved = lifecycle.apply_bulk(
                    Device.objects.filter(pk__in=chunk, state=state), action
                )
                if sum(moved.values()) != len(chunk):  # the rows are locked: cannot happen
                    raise RuntimeError("devices changed state under their row lock")
        expires = now + timedelta(seconds=cfg["EXPIRES_AFTER_S"])
        _insert_operations(
            {
                "organization_id": organization.pk,
                "bulk_id": bulk.pk,
                "device_id": row["id"],
                "gateway_id": row["gateway_id"],
                "kind": action,
                "from_state": row["state"],
                "next_attempt_at": now,
                "expires_at": expires,
                "params": json.dumps(params[row["id"]]) if row["id"] in params else "",
            }
            for row in the_plan.eligible
        )
        audit.record(
            organization,
            user,
            f"device.{action}",
            [row["id"] for row in the_plan.eligible],
            object_type="device",
            outcome=AuditOutcome.PARTIAL if the_plan.skipped else AuditOutcome.SUCCESS,
            bulk=bulk.pk,
            target=target,
            skipped=len(the_plan.skipped),
        )
        gateway_ids = [g.id for g in the_plan.gateways if g.online]
        transaction.on_commit(lambda: _after_start(organization.pk, bulk, gateway_ids))
    return bulk, the_plan


# Every column of a new operation (the rest are NULL until it is sent).
_NEW_OPERATION = {
    "uid": None,  # uuid4() per row
    "generation": 0,
    "state": OperationState.QUEUED,
    "attempts": 0,
    "code": "",
    "error": "",
}


def _insert_operations(rows) -> None:
    """Write the new operations: COPY on PostgreSQL, ``bulk_create`` elsewhere.

    Ten thousand operations are one click's work; through ``bulk_create`` on PostgreSQL
    they cost ~2.5 s of the request (the ORM builds 160,000 parameters), with COPY ~0.3 s.
    """
    now = timezone.now()
    rows = [{**_NEW_OPERATION, **row, "uid": uuid.uuid4(), "created_at": now} for row in rows]
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        Operation.objects.bulk_create((Operation(**row) for row in rows), batch_size=1000)
        return
    fields = [Operation._meta.get_field(name.removesuffix("_id")) for name in rows[0]]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(Operation._meta.db_table)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(
                [
                    f.get_db_prep_save(value, connection)
                    for f, value in zip(fields, row.values(), strict=True)
                ]
            )


def _after_start(organization_id, bulk, gateway_ids):
    from devices import jobs
    from portal import live

    jobs.enqueue_dispatch(gateway_ids)
    live.publish(organization_id, "refresh", widgets=["devices", "operations", "licenses"])
    live.publish(organization_id, "operation", **progress(bulk))


def progress(bulk: BulkOperation) -> dict:
    return {
        "id": bulk.pk,
        "total": bulk.total,
        "done": bulk.done,
        "failed": bulk.failed,
        "cancelled": bulk.cancelled,
        "running": bulk.is_running,
    }


# -- finishing (one place for the bridge, the reconciler, cancel) --------------------

_OUTCOME_FIELD = {
    OperationState.DONE: "done",
    OperationState.FAILED: "failed",
    OperationState.CANCELLED: "cancelled",
}


def _finish(filters: Q, state: str, now: datetime, changes: Changes | None, **fields) -> int:
    """Close the open operations matching ``filters``; advance counters and devices.

    The claim token makes this exact under races: only the rows this UPDATE closed are
    read back, counted, and have their device moved.
    """
    token = uuid.uuid4()
    closed = Operation.objects.filter(filters, state__in=OPEN_OPERATION_STATES).update(
        state=state, claim=token, finished_at=now, **fields
    )
    if not closed:
        return 0
    rows = list(
        Operation.objects.filter(claim=token).values(
            "id", "bulk_id", "device_id", "kind", "from_state", "organization_id"
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
        hook(state, rows, fields.get("code", ""), fields.get("error", ""), now)
    _close_bulks(per_bulk, now)
    if changes is not None:
        _report(device_ids, per_bulk, changes)
    return closed


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


def _requeue(filters: Q, now: datetime, *, next_attempt_at, bump_generation: bool, **fields) -> int:
    updates = {"state": OperationState.QUEUED, "next_attempt_at": next_attempt_at, **fields}
    if bump_generation:
        updates["generation"] = F("generation") + 1
    return Operation.objects.filter(filters, state=OperationState.SENT).update(
        claim=None, deadline=None, **updates
    )


# -- the bridge's side: results from gateways ----------------------------------------


def complete(batch: list[tuple[GatewayRef, list[dict]]], now: datetime) -> Changes:
    """Apply a batch's results (registered in ``devices.ingest.RESULT_HANDLERS``).

    A result counts only from the gateway the operation was sent to, for its current
    generation; anything else (late, repeated, forged by another gateway) is ignored.
    """
    changes = Changes()
    wanted: dict[uuid.UUID, tuple[int, int, dict]] = {}
    for gateway, items in batch:
        for item in items:
            parsed = parse_wire_id(item["op"])
            if parsed:
                wanted[parsed[0]] = (gateway.id, parsed[1], item)
    if not wanted:
        return changes
    ok, retry, failed = [], defaultdict(list), defaultdict(list)
    max_attempts = config()["MAX_ATTEMPTS"]
    for chunk in chunks(wanted):
        for op in Operation.objects.filter(uid__in=chunk, state__in=OPEN_OPERATION_STATES).values(
            "id", "uid", "gateway_id", "generation", "attempts"
        ):
            gateway_id, generation, item = wanted[op["uid"]]
            if op["gateway_id"] != gateway_id or op["generation"] != generation:
                continue
            if item["ok"]:
                ok.append(op["id"])
                continue
            code = item["code"]
            reason = (item.get("reason") or ResultCode(code).name.replace("_", " ").lower())[:500]
            if code in RETRYABLE and op["attempts"] < max_attempts:
                retry[op["attempts"]].append(op["id"])
            else:
                failed[(code, reason)].append(op["id"])
    for chunk in chunks(ok):
        _finish(Q(pk__in=chunk), OperationState.DONE, now, changes, code=ResultCode.OK, error="")
    for (code, reason), ids in failed.items():
        for chunk in chunks(ids):
            _finish(Q(pk__in=chunk), OperationState.FAILED, now, changes, code=code, error=reason)
    for attempts, ids in retry.items():
        for chunk in chunks(ids):
            _requeue(
                Q(pk__in=chunk), now, next_attempt_at=now + backoff(attempts), bump_generation=True
            )
    gateway_ids = {gateway.id for gateway, _ in batch}
    dispatch_waiting(gateway_ids, now)
    return changes


def dispatch_waiting(gateway_ids, now) -> None:
    """Answers free room under the per-gateway cap: send what is waiting, after commit."""
    waiting = list(
        Operation.objects.filter(
            gateway_id__in=list(gateway_ids), state=OperationState.QUEUED, next_attempt_at__lte=now
        )
        .values_list("gateway_id", flat=True)
        .distinct()
    )
    if waiting:
        from devices import jobs

        # Robust: the results are committed whatever Redis does. Raising here would make
        # the bridge think its batch failed and write it again and again (events twice)
        # while Redis is away; the reconciler enqueues what this could not.
        transaction.on_commit(lambda: jobs.enqueue_dispatch(waiting), robust=True)


# -- the worker's side ---------------------------------------------------------------


def claim_for_dispatch(gateway_id: int, now: datetime | None = None) -> list[dict]:
    """Mark the gateway's due operations sent (up to its cap) and return them to publish."""
    now = now or timezone.now()
    cfg = config()
    in_flight = Operation.objects.filter(gateway_id=gateway_id, state=OperationState.SENT).count()
    room = cfg["GATEWAY_CONCURRENCY"] - in_flight
    if room <= 0:
        return []
    due = Operation.objects.filter(
        gateway_id=gateway_id, state=OperationState.QUEUED, next_attempt_at__lte=now
    ).order_by("id")
    ids = list(due.values_list("id", flat=True)[:room])
    if not ids:
        return []
    token = uuid.uuid4()
    deadline = now + timedelta(seconds=cfg["ANSWER_TIMEOUT_S"])
    for chunk in chunks(ids):
        Operation.objects.filter(pk__in=chunk, state=OperationState.QUEUED).update(
            state=OperationState.SENT,
            claim=token,
            attempts=F("attempts") + 1,
            sent_at=now,
            deadline=deadline,
        )
    return list(
        Operation.objects.filter(claim=token).values(
            "id",
            "uid",
            "generation",
            "kind",
            "device__serial_number",
            "device__hardware_id",
            "device__name",
            "params",
        )
    )


def command_items(claimed: list[dict]) -> list[dict]:
    items = []
    for op in claimed:
        device = {"serial": op["device__serial_number"]}
        if op["device__hardware_id"]:
            device["hardware_id"] = op["device__hardware_id"]
        item = {"op": wire_id(op["uid"], op["generation"]), "kind": WIRE_KIND[op["kind"]].value}
        item["device"] = device
        params = {}
        if op["kind"] in NAMED_KINDS and op["device__name"]:
            params["name"] = op["device__name"][:120]
        if op["params"]:
            params.update(json.loads(op["params"]))
        if params:
            item["params"] = params
        items.append(item)
    return items


def unclaim(ids: list[int], now: datetime) -> int:
    """The publish failed (broker down): nothing reached the gateway, so try again soon."""
    return Operation.objects.filter(pk__in=ids, state=OperationState.SENT).update(
        state=OperationState.QUEUED,
        claim=None,
        deadline=None,
        attempts=F("attempts") - 1,
        next_attempt_at=now + backoff(1),
    )


# -- the user's other buttons --------------------------------------------------------


def cancel(bulk: BulkOperation, user) -> int:
    """Cancel what has not been sent yet; what a gateway already has runs to its end."""
    now = timezone.now()
    changes = Changes()
    with transaction.atomic():
        token_filter = Q(bulk=bulk, state=OperationState.QUEUED)
        n = _finish(token_filter, OperationState.CANCELLED, now, changes, code="cancelled")
        audit.record(bulk.organization, user, "operation.cancel", [bulk], cancelled=n)
    transaction.on_commit(lambda: push(changes))
    return n


def retry_failed(bulk: BulkOperation, user, devices=None) -> tuple[BulkOperation, Plan]:
    """A new bulk operation for the devices that failed in ``bulk`` (or some of them)."""
    failed = Device.objects.filter(
        operations__bulk=bulk, operations__state=OperationState.FAILED
    ).distinct()
    if devices is not None:
        failed = failed.filter(pk__in=devices)
    failed = Device.objects.filter(pk__in=failed.values("pk"), organization=bulk.organization)
    # What the first try carried (an enrollment's access key) goes again.
    params = {
        device_id: json.loads(raw)
        for device_id, raw in bulk.operations.filter(state=OperationState.FAILED)
        .exclude(params="")
        .values_list("device_id", "params")
    }
    # A failed device is in state "failed", from which provision and deprovision both run.
    return start(bulk.organization, user, bulk.kind, failed, f"retry of {bulk}", params=params)


def push(changes: Changes) -> None:
    """Send what a change outside the bridge did to the browsers (the bridge pushes its own)."""
    from portal import live

    at = int(time.time() * 1000)
    for org, rows in changes.devices.items():
        live.publish(org, "devices", rows=list(rows.values()), at=at)
    for org, items in changes.extra.items():
        for kind, payload in items:
            live.publish(org, kind, **payload)


# -- the reconciler ------------------------------------------------------------------


@dataclass
class Reconciled:
    resent: int = 0
    retried_later: int = 0
    gave_up: int = 0
    expired: int = 0
    gateways: list[int] = field(default_factory=list)

    def __bool__(self):
        return bool(self.resent or self.gave_up or self.expired or self.gateways)


def reconcile(now: datetime | None = None) -> tuple[Reconciled, Changes]:
    """One pass: expire, re-send the unanswered, fail after the retry budget, dispatch.

    Idempotent and safe to run from several processes: every step is a conditional
    UPDATE. After Redis loses its jobs, this is what puts them back.
    """
    now = now or timezone.now()
    cfg = config()
    result, changes = Reconciled(), Changes()
    with transaction.atomic():
        result.expired = _finish(
            Q(expires_at__lt=now),
            OperationState.FAILED,
            now,
            changes,
            code="expired",
            error="Gave up: the gateway did not take the operation before its deadline.",
        )
        overdue = Q(state=OperationState.SENT, deadline__lt=now)
        result.gave_up = _finish(
            overdue & Q(attempts__gte=cfg["MAX_ATTEMPTS"]),
            OperationState.FAILED,
            now,
            changes,
            code=ResultCode.TIMEOUT,
            error=f"No answer from the gateway after {cfg['MAX_ATTEMPTS']} attempts.",
        )
        # Same generation: if the gateway did it and only the answer was lost, it
        # answers again from its memory instead of doing it twice.
        result.resent = _requeue(overdue, now, next_attempt_at=now, bump_generation=False)
        due = (
            Operation.objects.filter(
                state=OperationState.QUEUED, next_attempt_at__lte=now, gateway__is_online=True
            )
            .values_list("gateway_id", flat=True)
            .distinct()
        )
        result.gateways = sorted(set(due))
    return result, changes


def open_counts(organization=None, bulk=None) -> dict[str, int]:
    """Operations still open, by state, of an organization or of one bulk operation."""
    ops = Operation.objects.filter(state__in=OPEN_OPERATION_STATES)
    ops = ops.filter(bulk=bulk) if bulk is not None else ops.for_organization(organization)
    rows = ops.values("state").annotate(n=Count("id")).order_by()
    counts = {"queued": 0, "sent": 0} | {r["state"]: r["n"] for r in rows}
    return counts | {"open": counts["queued"] + counts["sent"]}


__all__ = [
    "BULK_ACTIONS",
    "NothingToDo",
    "Plan",
    "cancel",
    "claim_for_dispatch",
    "command_items",
    "complete",
    "plan",
    "reconcile",
    "retry_failed",
    "start",
    "unclaim",
]
