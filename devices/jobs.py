"""RQ jobs: one job per gateway sends that gateway's due operations as batched commands.

A job never holds state of its own: it claims operations in the database, publishes
them, and returns. If the worker dies mid-job, the claimed operations pass their
answer deadline and the reconciler sends them again under the same wire id, so the
gateway (which remembers ids) never does one twice.
"""

import logging
import threading
import time
import uuid

import django_rq
from django.utils import timezone

from devices import operations
from devices.models import Gateway
from devices.mqtt import make_client, set_nodelay
from gateway.protocol import MsgType, encode_batches, seal_params, topic

log = logging.getLogger(__name__)

QUEUE = "default"
PUBLISH_TIMEOUT_S = 15.0
PENDING_TTL_S = 30  # a dispatch job waiting in Redis for this long is assumed lost


class PublishFailed(RuntimeError):
    pass


class CommandPublisher:
    """One MQTT connection per worker process, reused by every job it runs."""

    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        self.connected = threading.Event()
        self.client = make_client(f"fleetgate-worker-{uuid.uuid4().hex[:12]}")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            set_nodelay(client)
            self.connected.set()

    @classmethod
    def get(cls) -> "CommandPublisher":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def publish(self, gateway_uid: str, secret: str, items: list[dict]) -> int:
        """Seal, sign and publish ``items`` in as few messages as fit; wait for the acks.

        Access keys and download tokens are sealed to the gateway here, at the last
        moment (the database keeps them encrypted at rest, the broker never sees them).
        """
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        if not self.connected.wait(PUBLISH_TIMEOUT_S):
            raise PublishFailed("the MQTT broker is not answering")
        items = [seal_params(item, gateway_uid, secret) for item in items]
        infos = []
        for _part, payload in encode_batches(MsgType.COMMAND, gateway_uid, items, secret):
            infos.append(self.client.publish(topic(gateway_uid, MsgType.COMMAND), payload, qos=1))
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise PublishFailed("the MQTT broker did not acknowledge a command")
        return len(infos)


def _pending_key(gateway_id: int) -> str:
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
        key, job_id = _pending_key(gateway_id), f"dispatch-{gateway_id}-{uuid.uuid4().hex[:8]}"
        if not redis.set(key, job_id, nx=True, ex=PENDING_TTL_S):
            if not recheck or _waiting(queue, redis.get(key)):
                continue
            redis.set(key, job_id, ex=PENDING_TTL_S)
        jobs.append(
            queue.prepare_data(
                dispatch, args=(gateway_id,), job_id=job_id, result_ttl=60, failure_ttl=3600
            )
        )
    if jobs:
        with redis.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    return len(jobs)


def dispatch(gateway_id: int) -> dict:
    """Send one gateway its due operations (up to its concurrency cap)."""
    queue = django_rq.get_queue(QUEUE)
    queue.connection.delete(_pending_key(gateway_id))
    gateway = Gateway.objects.filter(pk=gateway_id).only("uid", "secret", "is_online").first()
    if gateway is None or not gateway.is_online or not gateway.secret:
        return {"gateway": gateway_id, "sent": 0, "skipped": "offline"}
    now = timezone.now()
    claimed = operations.claim_for_dispatch(gateway_id, now)
    if not claimed:
        return {"gateway": gateway_id, "sent": 0}
    try:
        messages = CommandPublisher.get().publish(
            gateway.uid, gateway.secret, operations.command_items(claimed)
        )
    except Exception:
        operations.unclaim([op["id"] for op in claimed], timezone.now())
        log.exception("Could not send %d operations to %s", len(claimed), gateway.uid)
        raise
    return {"gateway": gateway_id, "sent": len(claimed), "messages": messages}
