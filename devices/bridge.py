"""The portal side of the gateway link: MQTT in, database and browsers out.

One paho network thread receives and queues; writer threads decode (signature,
replay, schema), write a whole batch through ``devices.ingest`` in one transaction,
acknowledge the batch to the broker only after commit (manual QoS 1 acks, persistent
session: a crash loses nothing), then push the coalesced changes to the browsers.
Bad messages are refused and counted by reason; nothing a gateway sends stops it.

Two writers, by topic: results (``res``) have their own, so that the 10,000 answers of
a bulk action — mostly database time, each moving devices through sixteen indexes —
do not hold up everybody's events, discoveries and status behind them.
"""

import json
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter

import redis
from django.conf import settings
from django.db import close_old_connections, connection

from devices.gateway_changes import Subscriber
from devices.gateway_directory import GatewayDirectory
from devices.ingest import Changes, ingest
from devices.mqtt import make_client, set_nodelay
from gateway.protocol import (
    SUBSCRIBE_ALL,
    ProtocolError,
    Reason,
    ReplayGuard,
    decode,
    shared_subscription,
)
from portal.live import BackgroundPublisher

log = logging.getLogger(__name__)

STATS_KEY = "fleetgate:bridge:stats:{}"
RESULTS_SUFFIX = "/res"  # the results channel's topics: their own writer


class RefusalLog:
    """One warning per topic and reason every ``every_s`` seconds, naming what was wrong.

    The detail says which field made a message ``malformed`` (``body.events[3].kind: …``)
    or why it was refused otherwise; the counters (``rejected.<reason>``) count every
    one, this keeps a flood from one gateway from flooding the log.
    """

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self._last: dict[tuple[str, Reason], float] = {}
        self._held: Counter = Counter()
        self._lock = threading.Lock()

    def note(self, topic: str, exc: ProtocolError) -> None:
        key, now = (topic[:200], exc.reason), time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.every_s) < self.every_s:
                self._held[key] += 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        more = f" (and {held} more since the last such warning)" if held else ""
        log.warning("Refused a message on %s: %s%s", key[0], exc, more)


class Bridge:
    def __init__(
        self,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
        batch_window: float = 0.05,
        max_batch: int = 2000,
        url: str | None = None,
        publish_live: bool = True,
    ):
        self.client_id = client_id or f"fleetgate-bridge-{socket.gethostname()}-{os.getpid()}"
        self.topic = shared_subscription(shared_group) if shared_group else SUBSCRIBE_ALL
        self.batch_window, self.max_batch = batch_window, max_batch
        self.inbox: queue.Queue = queue.Queue(maxsize=100_000)
        self.results_inbox: queue.Queue = queue.Queue(maxsize=100_000)
        self.directory = GatewayDirectory()
        self.guard = ReplayGuard()
        self.results_guard = ReplayGuard()  # a topic's messages always meet the same guard
        self.stats: Counter = Counter()
        self.refusals = RefusalLog()
        self._stats_lock = threading.Lock()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.publisher = BackgroundPublisher() if publish_live else None
        # Rotated secrets and deleted gateways stop working at once, not at the cache's TTL.
        self.gateway_changes = Subscriber(self._gateway_changed, self.directory.expire)
        self._redis = None
        self.client = make_client(self.client_id, clean_session=False, manual_ack=True, url=url)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho's network thread --------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason_code)
            return
        set_nodelay(client)
        client.subscribe(self.topic, qos=1)
        self._count(Counter(connects=1))
        self.connected.set()
        log.info("Bridge connected, subscribed to %s", self.topic)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("Bridge lost the broker (%s); reconnecting", reason_code)

    def _gateway_changed(self, uid: str) -> None:
        self.directory.forget(uid)
        self._count(Counter(gateway_changes=1))

    def _on_message(self, client, userdata, message):
        # Blocks when a writer falls far behind: TCP back-pressure, not memory growth.
        inbox = self.results_inbox if message.topic.endswith(RESULTS_SUFFIX) else self.inbox
        inbox.put((message.topic, message.payload, message.mid, message.qos, message.dup))

    # -- the writer thread --------------------------------------------------------------

    def run(self, duration: float | None = None) -> None:
        """Run until ``stop()`` (or for ``duration`` seconds)."""
        deadline = time.monotonic() + duration if duration else None
        self.directory.refresh()
        self.gateway_changes.start()
        results = threading.Thread(target=self._write_results, name="bridge-results", daemon=True)
        results.start()
        self.client.loop_start()
        last_stats = time.monotonic()
        try:
            while not self.stopping.is_set():
                if deadline and time.monotonic() > deadline:
                    break
                batch = self._drain(self.inbox)
                if batch:
                    self.process(batch)
                if time.monotonic() - last_stats > 1.0:
                    self._report_stats()
                    last_stats = time.monotonic()
        finally:
            self.stopping.set()
            self.gateway_changes.stop()
            results.join(30)
            self.client.disconnect()
            self.client.loop_stop()
            if self.publisher:
                self.publisher.close()
            self._report_stats()

    def stop(self) -> None:
        self.stopping.set()

    def _write_results(self) -> None:
        """The results writer: its own thread, so its own database connection."""
        try:
            while not self.stopping.is_set():
                batch = self._drain(self.results_inbox)
                if batch:
                    self.process(batch, self.results_guard)
        finally:
            connection.close()

    def _drain(self, inbox) -> list:
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch, until = [first], time.monotonic() + self.batch_window
        # Messages that queued up while the last batch was written have waited already:
        # take them and go. Waiting the window on top only added latency under load.
        backlog = not inbox.empty()
        while len(batch) < self.max_batch:
            if backlog:
                try:
                    batch.append(inbox.get_nowait())
                    continue
                except queue.Empty:
                    break
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list, guard: ReplayGuard | None = None) -> None:
        """Decode, write and acknowledge one batch; retried until the database takes it."""
        guard = guard or self.guard
        decoded, counts = [], Counter()
        for topic, payload, _mid, _qos, dup in batch:
            counts["received"] += 1
            try:
                msg = decode(topic, payload, self.directory.secret, guard)
            except ProtocolError as exc:
                if dup and exc.reason is Reason.REPLAYED:
                    counts["duplicates"] += 1  # QoS 1 redelivery of what we already have
                    continue
                counts[f"rejected.{exc.reason.value}"] += 1
                self.refusals.note(topic, exc)
                continue
            decoded.append((self.directory.get(msg.gw), msg))
        outcome = None
        while outcome is None:
            try:
                outcome = ingest(decoded)
            except Exception:
                if self.stopping.is_set():
                    self._count(counts)
                    return  # not acknowledged: the broker redelivers to the next bridge
                log.exception("Writing a batch of %d messages failed; retrying", len(decoded))
                close_old_connections()
                time.sleep(1.0)
        for reason, count in outcome.rejected.items():
            counts[f"rejected.{reason.value}"] += count
        counts.update(accepted=outcome.accepted, events=outcome.events, batches=1)
        self._count(counts)
        for _topic, _payload, mid, qos, _dup in batch:
            if qos:
                self.client.ack(mid, qos)
        if self.publisher and outcome.changes:
            self.push(outcome.changes)

    def _count(self, counts: Counter) -> None:
        with self._stats_lock:  # two writers
            self.stats.update(counts)

    def push(self, changes: Changes) -> None:
        """One message per organization and kind, however many rows changed."""
        now_ms = int(time.time() * 1000)
        for org, rows in changes.devices.items():
            self.publisher.publish(org, "devices", rows=list(rows.values()), at=now_ms)
        for org, rows in changes.gateways.items():
            self.publisher.publish(org, "gateways", rows=list(rows.values()))
        for org, count in changes.event_counts.items():
            sample = changes.event_samples.get(org, [])
            self.publisher.publish(org, "events", count=count, sample=sample, at=now_ms)
        for org, items in changes.extra.items():
            for kind, payload in items:
                self.publisher.publish(org, kind, **payload)

    def _report_stats(self) -> None:
        """Counters in Redis for the Events widget and ``run_bridge --stats``."""
        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
            key = STATS_KEY.format(self.client_id)
            with self._stats_lock:
                stats = dict(self.stats)
            self._redis.set(key, json.dumps({**stats, "at": time.time()}), ex=30)
        except redis.RedisError as exc:  # stats are best effort
            log.debug("Could not report bridge stats: %s", exc)
