"""The bridge's side: results from gateways close, retry or fail their operations."""

import uuid
from collections import defaultdict
from datetime import datetime

from django.db.models import Q

from devices.choices import OPEN_OPERATION_STATES, OperationState
from devices.ingest import Changes, GatewayRef
from devices.models import Operation
from devices.operations.base import CHUNK, RETRYABLE, backoff, chunks, config, parse_wire_id
from devices.operations.dispatch import dispatch_waiting
from devices.operations.finish import finish, requeue
from gateway.codes import ResultCode


def complete(batch: list[tuple[GatewayRef, list[dict]]], now: datetime) -> Changes:
    """Apply a batch's results (registered in ``devices.ingest.RESULT_HANDLERS``).

    A result counts only from the gateway the operation was sent to, for its current
    generation; anything else (late, repeated, forged by another gateway) is ignored.
    A constant number of queries per batch, however many devices and reasons it holds.
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
    ok, retry, failed = [], defaultdict(list), {}
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
                failed[op["id"]] = (code, reason)
    for chunk in chunks(ok):
        finish(Q(pk__in=chunk), OperationState.DONE, now, changes, code=ResultCode.OK, error="")
    for chunk in chunks(failed, size=CHUNK // 2):  # each id twice: the filter and a CASE
        outcomes = {pk: failed[pk] for pk in chunk}
        finish(Q(pk__in=chunk), OperationState.FAILED, now, changes, outcomes=outcomes)
    for attempts, ids in retry.items():
        for chunk in chunks(ids):
            requeue(
                Q(pk__in=chunk), now, next_attempt_at=now + backoff(attempts), bump_generation=True
            )
    gateway_ids = {gateway.id for gateway, _ in batch}
    dispatch_waiting(gateway_ids, now)
    return changes
