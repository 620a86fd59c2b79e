"""The worker's side: which operations go to a gateway now, and the jobs that send them.

One RQ job per gateway (``devices.jobs.dispatch``, enqueued here by name so this
package never imports the job module that imports it) claims the gateway's due
operations up to its concurrency cap, publishes them, and un-claims them when the
broker does not take them.
"""

import json
import uuid
from datetime import datetime, timedelta

import django_rq
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from devices.choices import OperationState
from devices.models import Operation
from devices.operations.base import NAMED_KINDS, WIRE_KIND, backoff, chunks, config, wire_id

QUEUE = "default"
DISPATCH_JOB = "devices.jobs.dispatch"
PENDING_TTL_S = 30  # a dispatch job waiting in Redis for this long is assumed lost


def pending_key(gateway_id: int) -> str:
    return f"fleetgate:dispatch-pending:{gateway_id}"


def _waiting(queue, job_id: bytes | None) -> bool:
    """Is this job still in the queue (not taken by a worker, not lost with Redis)?"""
    return job_id is not None and queue.connection.lpos(queue.key, job_id) is not None


def enqueue_dispatch(gateway_ids, *, recheck: bool = False) -> int:
    """One job per gateway that has none waiting yet; returns how many were enqueued.

    The pending mark names its job. ``recheck`` (the reconciler's passes): a mark whose
    job is no longer in the queue — a worker took it and died before the job cleared
    the mark — no longer blocks the gateway until the mark expires.
    """
    queue = django_rq.get_queue(QUEUE)
    redis = queue.connection
    jobs = []
    for gateway_id in sorted(set(gateway_ids)):
        key, job_id = pending_key(gateway_id), f"dispatch-{gateway_id}-{uuid.uuid4().hex[:8]}"
        if not redis.set(key, job_id, nx=True, ex=PENDING_TTL_S):
            if not recheck or _waiting(queue, redis.get(key)):
                continue
            redis.set(key, job_id, ex=PENDING_TTL_S)
        jobs.append(
            queue.prepare_data(
                DISPATCH_JOB, args=(gateway_id,), job_id=job_id, result_ttl=60, failure_ttl=3600
            )
        )
    if jobs:
        with redis.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


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
        # Robust: the results are committed whatever Redis does. Raising here would make
        # the bridge think its batch failed and write it again and again (events twice)
        # while Redis is away; the reconciler enqueues what this could not.
        transaction.on_commit(lambda: enqueue_dispatch(waiting), robust=True)


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
    """The claimed operations as the items of a command message (docs/gateway-protocol.md)."""
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
