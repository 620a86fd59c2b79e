"""The portal side of the gateway link: MQTT in, database and browsers out.

One paho network thread receives and queues; one writer thread decodes (signature,
replay, schema), writes a whole batch through ``devices.ingest`` in one transaction,
acknowledges the batch to the broker only after commit (manual QoS 1 acks, persistent
session: a crash loses nothing), then pushes the coalesced changes to the browsers.
Bad messages are refused and counted by reason; nothing a gateway sends stops it.
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
from django.db import close_old_connections

from devices.ingest import Changes, GatewayDirectory, ingest
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
        self.directory = GatewayDirectory()
        self.guard = ReplayGuard()
        self.stats: Counter = Counter()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.publisher = BackgroundPublisher() if publish_live else None
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
        self.stats["connects"] += 1
        self.connected.set()
        log.info("Bridge connected, subscribed to %s", self.topic)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("Bridge lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message):
        # Blocks when the writer falls far behind: TCP back-pressure, not memory growth.
        self.inbox.put((message.topic, message.payload, message.mid, message.qos, message.dup))

    # -- the writer thread --------------------------------------------------------------

    def run(self, duration: float | None = None) -> None:
        """Run until ``stop()`` (or for ``duration`` seconds)."""
        deadline = time.monotonic() + duration if duration else None
        self.directory.refresh()
        self.client.loop_start()
        last_stats = time.monotonic()
        try:
            while not self.stopping.is_set():
                if deadline and time.monotonic() > deadline:
                    break
                batch = self._drain()
                if batch:
                    self.process(batch)
                if time.monotonic() - last_stats > 1.0:
                    self._report_stats()
                    last_stats = time.monotonic()
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self.publisher:
                self.publisher.close()
            self._report_stats()

    def stop(self) -> None:
        self.stopping.set()

    def _drain(self) -> list:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch, until = [first], time.monotonic() + self.batch_window
        # Messages that queued up while the last batch was written have waited already:
        # take them and go. Waiting the window on top only added latency under load.
        backlog = not self.inbox.empty()
        while len(batch) < self.max_batch:
            if backlog:
                try:
                    batch.append(self.inbox.get_nowait())
                    continue
                except queue.Empty:
                    break
            remaining = until - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list) -> None:
        """Decode, write and acknowledge one batch; retried until the database takes it."""
        decoded = []
        for topic, payload, _mid, _qos, dup in batch:
            self.stats["received"] += 1
            try:
                msg = decode(topic, payload, self.directory.secret, self.guard)
            except ProtocolError as exc:
                if dup and exc.reason is Reason.REPLAYED:
                    self.stats["duplicates"] += 1  # QoS 1 redelivery of what we already have
                else:
                    self.stats[f"rejected.{exc.reason.value}"] += 1
                log.debug("Rejected message on %s: %s", topic, exc)
                continue
            decoded.append((self.directory.get(msg.gw), msg))
        outcome = None
        while outcome is None:
            try:
                outcome = ingest(decoded)
            except Exception:
                if self.stopping.is_set():
                    return  # not acknowledged: the broker redelivers to the next bridge
                log.exception("Writing a batch of %d messages failed; retrying", len(decoded))
                close_old_connections()
                time.sleep(1.0)
        for reason, count in outcome.rejected.items():
            self.stats[f"rejected.{reason.value}"] += count
        self.stats["accepted"] += outcome.accepted
        self.stats["events"] += outcome.events
        self.stats["batches"] += 1
        for _topic, _payload, mid, qos, _dup in batch:
            if qos:
                self.client.ack(mid, qos)
        if self.publisher and outcome.changes:
            self.push(outcome.changes)

    def push(self, changes: Changes) -> None:
        """One message per organization and kind, however many rows changed."""
        now_ms = int(time.time() * 1000)
        for org, rows in changes.devices.items():
            self.publisher.publish(org, "devices", rows=list(rows.values()))
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
            self._redis.set(key, json.dumps({**self.stats, "at": time.time()}), ex=30)
        except redis.RedisError as exc:  # stats are best effort
            log.debug("Could not report bridge stats: %s", exc)
