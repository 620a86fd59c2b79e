"""RQ jobs: one job per gateway sends that gateway's due operations as batched commands.

``devices.operations.dispatch`` decides when a gateway gets a job and enqueues this
module's ``dispatch`` by name; this module only runs it (it imports the operations,
never the other way round).

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
from devices.operations.dispatch import QUEUE, pending_key
from gateway.protocol import MsgType, encode_batches, topic

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 15.0


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
        """Sign and publish ``items`` in as few messages as fit; wait for the broker's acks."""
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        if not self.connected.wait(PUBLISH_TIMEOUT_S):
            raise PublishFailed("the MQTT broker is not answering")
        infos = []
        for _part, payload in encode_batches(MsgType.COMMAND, gateway_uid, items, secret):
            infos.append(self.client.publish(topic(gateway_uid, MsgType.COMMAND), payload, qos=1))
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise PublishFailed("the MQTT broker did not acknowledge a command")
        return len(infos)


def dispatch(gateway_id: int) -> dict:
    """Send one gateway its due operations (up to its concurrency cap)."""
    queue = django_rq.get_queue(QUEUE)
    queue.connection.delete(pending_key(gateway_id))
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
