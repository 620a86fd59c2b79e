"""Outgoing messages: batched, signed at send time, capped in flight, re-sent after a reconnect.

Per-message cost bounds MQTT throughput (STACK-NOTES), so items are collected for a
short window into one message. At most ``max_inflight`` messages wait for a broker
acknowledgement at once: paho scans every outstanding message on each ack, so handing
it thousands slows everything down. Messages are signed when they leave, never before,
so a message re-sent after a long outage carries a fresh timestamp and id instead of
being refused as a replay.

Runs on the agent's event loop; the MQTT thread reaches it via ``call_soon_threadsafe``.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from gateway.codes import MsgType, ProtocolError
from gateway.protocol import encode_batches, topic

log = logging.getLogger(__name__)

Delivered = Callable[[MsgType, list[dict]], None]
MAX_QUEUED_EVENTS = 100_000  # events are best effort: beyond this, the oldest are dropped


class Outbox:
    def __init__(
        self,
        client,
        gateway_uid: str,
        secret: str,
        *,
        window_s: float = 0.02,
        max_items: int = 500,
        max_inflight: int = 100,
        on_delivered: Delivered | None = None,
    ):
        self.client = client
        self.uid = gateway_uid
        self.secret = secret
        self.window_s = window_s
        self.max_items = max_items
        self.max_inflight = max_inflight
        self.on_delivered = on_delivered or (lambda msg_type, items: None)
        self.connected = False
        self.dropped_events = 0
        self._loop = asyncio.get_running_loop()
        self._collecting: dict[MsgType, list[dict]] = {}
        self._timers: dict[MsgType, asyncio.TimerHandle] = {}
        self._queue: deque[tuple[MsgType, list[dict]]] = deque()
        self._inflight: dict[int, tuple[MsgType, list[dict]]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- putting things in --------------------------------------------------------------

    def add(self, msg_type: MsgType, item: dict) -> None:
        """Collect one item; it leaves within ``window_s`` or when the batch is full."""
        batch = self._collecting.setdefault(msg_type, [])
        batch.append(item)
        self._idle.clear()
        if len(batch) >= self.max_items:
            self._flush(msg_type)
        elif msg_type not in self._timers:
            self._timers[msg_type] = self._loop.call_later(self.window_s, self._flush, msg_type)

    def send(self, msg_type: MsgType, items: list[dict]) -> None:
        """Queue items that were already collected (results of a finished batch)."""
        if items:
            self._queue.append((msg_type, list(items)))
            self._idle.clear()
            self.pump()

    def _flush(self, msg_type: MsgType) -> None:
        timer = self._timers.pop(msg_type, None)
        if timer:
            timer.cancel()
        batch = self._collecting.pop(msg_type, None)
        if batch:
            if msg_type is MsgType.EVENT:
                self._bound_events(len(batch))
            self._queue.append((msg_type, batch))
            self.pump()

    def _bound_events(self, incoming: int) -> None:
        queued = sum(len(items) for t, items in self._queue if t is MsgType.EVENT)
        while queued + incoming > MAX_QUEUED_EVENTS:
            for i, (t, items) in enumerate(self._queue):
                if t is MsgType.EVENT:
                    del self._queue[i]
                    queued -= len(items)
                    self.dropped_events += len(items)
                    break
            else:
                return

    # -- sending ------------------------------------------------------------------------

    def pump(self) -> None:
        while self.connected and self._queue and len(self._inflight) < self.max_inflight:
            msg_type, items = self._queue.popleft()
            try:
                # Items were checked one by one where they were made (see Agent).
                batches = encode_batches(msg_type, self.uid, items, self.secret, validate=False)
                for part, payload in batches:
                    info = self.client.publish(topic(self.uid, msg_type), payload, qos=1)
                    self._inflight[info.mid] = (msg_type, part)
            except ProtocolError as e:  # a bug upstream; never let it stop the outbox
                log.error("dropped %d %s items that do not encode: %s", len(items), msg_type, e)
        self._check_idle()

    def _check_idle(self) -> None:
        if not (self._queue or self._inflight or self._collecting):
            self._idle.set()

    def acked(self, mid: int) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is not None:
            try:
                self.on_delivered(*entry)
            except Exception:
                log.exception("delivery callback failed")
        self.pump()

    def disconnected(self) -> None:
        self.connected = False

    def reconnected(self, dropped_mids: list[int]) -> None:
        """Requeue what the old connection never confirmed; it is signed afresh."""
        for mid in reversed(dropped_mids):
            entry = self._inflight.pop(mid, None)
            if entry is not None:
                self._queue.appendleft(entry)
        self.connected = True
        self.pump()

    async def drain(self, timeout: float | None = None) -> bool:
        """Flush collected items and wait until the broker acknowledged everything."""
        for msg_type in list(self._collecting):
            self._flush(msg_type)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def backlog(self) -> int:
        return len(self._queue) + len(self._inflight)
