"""The gateway agent: one MQTT session to the portal, one driver to the devices.

Threads: paho runs its network loop in its own thread (``loop_start``), which also
reconnects by itself; everything else (driver work, batching, the store's result
writes) runs on one asyncio loop. MQTT callbacks hop onto the loop with
``call_soon_threadsafe``. Commands are written to the store inside the MQTT callback,
before paho acknowledges them, so an accepted operation survives a crash.
"""

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter

import paho.mqtt.client as mqtt

from gateway import __version__, schema
from gateway.codes import GatewayStatus, MsgType, OpKind, ProgressPhase, ProtocolError, ResultCode
from gateway.config import AgentConfig
from gateway.drivers import DriverError, OpContext, make_driver
from gateway.images import ImageCache
from gateway.outbox import Outbox
from gateway.protocol import Message, ReplayGuard, decode, encode, new_id, now_ms, topic
from gateway.store import Store

log = logging.getLogger(__name__)
mqtt_log = logging.getLogger("gateway.mqtt")
# paho logs this at error level while it reconnects, which is expected and not an error.
mqtt_log.addFilter(lambda record: not record.getMessage().startswith("Client is not connected"))
PRUNE_EVERY_S = 3600
SENT_MARK_DELAY_S = 0.2


def _one_line(text: str, limit: int = 500) -> str:
    """Device-supplied text made fit for a result's ``reason``."""
    return "".join(c if c.isprintable() else " " for c in str(text))[:limit].strip()


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.uid = config.gateway_uid
        self.session = new_id()  # one per process start; the will names it
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.state_dir / "agent.sqlite3")
        self.driver = make_driver(config.driver, self.uid, config.driver_options, self.store)
        self.images = ImageCache(config.state_dir / "images", protect_s=config.image_timeout_s)
        self.guard = ReplayGuard(window_s=config.command_max_age_s, max_ids=50_000)
        self.stats: Counter[str] = Counter()  # rejected messages by reason, executions
        self.connected = asyncio.Event()
        self.client = self._make_client()
        self.outbox: Outbox | None = None
        self._finished: list[dict] = []
        self._finish_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._sent_ids: list[str] = []
        self._sent_timer: asyncio.TimerHandle | None = None

    # -- MQTT ---------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"fleetgate-gw-{self.uid}",
            clean_session=False,  # the broker keeps commands sent while we are away
            protocol=mqtt.MQTTv311,
        )
        c.username_pw_set(self.uid, self.config.broker_password)
        if self.config.broker.scheme == "mqtts":
            c.tls_set()
        self._arm_will(c)
        c.reconnect_delay_set(self.config.reconnect_min_s, self.config.reconnect_max_s)
        c.max_inflight_messages_set(self.config.max_inflight)
        c.suppress_exceptions = True  # a bug in a callback is logged, never kills the thread
        c.enable_logger(mqtt_log)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _arm_will(self, client: mqtt.Client) -> None:
        """The offline status the broker publishes if this connection dies."""
        will = self._status(GatewayStatus.OFFLINE, will=True)
        client.will_set(topic(self.uid, MsgType.STATUS), will, qos=1, retain=True)

    def _status(self, state: GatewayStatus, *, will: bool = False) -> bytes:
        body = {"state": state.value, "session": self.session, "will": will}
        return encode(Message(MsgType.STATUS, self.uid, body), self.config.secret)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.uid, reason_code)
            return
        # Nagle + delayed ACK cost 160 ms per round trip here (STACK-NOTES).
        with contextlib.suppress(OSError, AttributeError):
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dropped = [m.mid for m in client.drop_out_messages()]  # re-signed by the outbox
        self._arm_will(client)  # for the next connection: a will id is used only once
        client.subscribe(topic(self.uid, MsgType.COMMAND), qos=1)
        self.loop.call_soon_threadsafe(self._connected, dropped)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self.loop.call_soon_threadsafe(self._disconnected)

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self.loop.call_soon_threadsafe(self.outbox.acked, mid)

    def _on_message(self, client, userdata, message):
        """Runs in paho's thread: authenticate, record durably, then hand to the loop."""
        try:
            msg = decode(message.topic, message.payload, self._secret_for, self.guard)
        except ProtocolError as e:
            self.stats[f"rejected_{e.reason.value}"] += 1
            log.warning("%s: refused a command message: %s", self.uid, e)
            return
        try:
            new, done = self.store.accept(msg.items)
        except Exception:
            log.exception("%s: could not record commands", self.uid)
            return
        self.stats["repeated_ops"] += len(msg.items) - len(new)
        self.loop.call_soon_threadsafe(self._dispatch, new, done)

    def _secret_for(self, uid: str) -> str | None:
        return self.config.secret if uid == self.uid else None

    # -- on the loop --------------------------------------------------------------------

    def _connected(self, dropped_mids: list[int]) -> None:
        log.info("%s: connected to %s", self.uid, self.config.broker_url)
        self.client.publish(
            topic(self.uid, MsgType.STATUS), self._status(GatewayStatus.ONLINE), qos=1, retain=True
        )
        self.client.publish(topic(self.uid, MsgType.HELLO), self._hello(), qos=1)
        self.outbox.reconnected(dropped_mids)
        self.connected.set()
        self._spawn(self._announce_devices())

    def _disconnected(self) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("%s: disconnected; paho reconnects by itself", self.uid)
        self.connected.clear()
        self.outbox.disconnected()

    def _hello(self) -> bytes:
        body = {
            "agent": f"fleetgate-gateway/{__version__}",
            "driver": self.driver.name,
            "session": self.session,
            "devices": self.driver.device_count(),
            "kinds": sorted(k.value for k in self.driver.kinds),
            "link": self.driver.link_state.value,
        }
        if self.driver.link_detail:
            body["detail"] = self.driver.link_detail[:500]
        return encode(Message(MsgType.HELLO, self.uid, body), self.config.secret)

    async def _announce_devices(self) -> None:
        try:
            devices = await self.driver.discover()
        except DriverError as e:
            log.warning("%s: discovery failed: %s", self.uid, e)
            return
        valid = []
        for device in devices:
            try:
                schema.device_info(device)
                valid.append(device)
            except ProtocolError as e:
                log.warning("%s: not announcing a device: %s", self.uid, e)
        self.outbox.send(MsgType.DISCOVERY, valid)

    def _dispatch(self, new: list[dict], done: list[dict]) -> None:
        self.outbox.send(MsgType.RESULT, done)  # repeated ids: the stored answer again
        for op in new:
            self._spawn(self._run(op))

    def _spawn(self, coro) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, op: dict) -> None:
        async with self._slots:
            result = self._checked(await self._execute(op))
        self._finished.append(result)
        if len(self._finished) >= 500:
            self._commit_finished()
        elif self._finish_timer is None:
            self._finish_timer = self.loop.call_later(self.outbox.window_s, self._commit_finished)

    async def _execute(self, op: dict) -> dict:
        """One operation to one result; never raises."""
        op_id, kind = op["op"], op["kind"]
        result: dict = {"op": op_id, "ok": False, "code": ResultCode.INTERNAL.value}
        if kind not in self.driver.kinds:
            reason = f"the {self.driver.name} driver cannot {kind}"
            return {**result, "code": ResultCode.UNSUPPORTED.value, "reason": reason}
        ctx = OpContext(self.uid, self._reporter(op_id, ProgressPhase.TRANSFER))
        is_image = kind == OpKind.LOAD_IMAGE
        try:
            async with asyncio.timeout(
                self.config.image_timeout_s if is_image else self.config.op_timeout_s
            ):
                if is_image:
                    p = op["params"]
                    report = self._reporter(op_id, ProgressPhase.DOWNLOAD, threadsafe=True)
                    ctx.image = await self.images.fetch(
                        p["url"], p["sha256"], p["size"], p["token"], report
                    )
                device = await self.driver.execute(op, ctx)
            self.stats["executed"] += 1
            return {
                **result,
                "ok": True,
                "code": ResultCode.OK.value,
                "device": device,
                "at": now_ms(),
            }
        except DriverError as e:
            self.stats["executed"] += 1
            result.update(code=e.code.value, reason=_one_line(e.reason) or e.code.value)
            if e.device:
                result["device"] = e.device
        except TimeoutError:
            result.update(code=ResultCode.TIMEOUT.value, reason="no answer within the deadline")
        except Exception as e:
            log.exception("%s: operation %s failed", self.uid, op_id)
            result["reason"] = f"{type(e).__name__}"[:500]
        result["at"] = now_ms()
        return result

    def _checked(self, result: dict) -> dict:
        """A driver's bad answer fails its own operation, never the whole result batch."""
        try:
            schema.result_item(result)
        except ProtocolError as e:
            log.error("%s: invalid result for %s: %s", self.uid, result["op"], e)
            return {
                "op": result["op"],
                "ok": False,
                "code": ResultCode.INTERNAL.value,
                "reason": "the driver returned an invalid result",
                "at": now_ms(),
            }
        return result

    def _reporter(self, op_id: str, phase: ProgressPhase, *, threadsafe: bool = False):
        """Progress at most every 5 % or every second, always at 100 %."""
        last = {"percent": -100, "at": 0.0}

        def report(done: int, total: int) -> None:
            percent = min(100, done * 100 // max(total, 1))
            now = time.monotonic()
            if percent < 100 and percent - last["percent"] < 5 and now - last["at"] < 1:
                return
            last.update(percent=percent, at=now)
            item = {
                "op": op_id,
                "phase": phase.value,
                "bytes": min(done, total),
                "total": max(total, 1),
                "percent": percent,
            }
            if threadsafe:
                self.loop.call_soon_threadsafe(self.outbox.add, MsgType.PROGRESS, item)
            else:
                self.outbox.add(MsgType.PROGRESS, item)

        return report

    def _commit_finished(self) -> None:
        """Results are durable before they are published: one transaction per batch."""
        if self._finish_timer:
            self._finish_timer.cancel()
            self._finish_timer = None
        batch, self._finished = self._finished, []
        if not batch:
            return
        with self.store.transaction():
            self.driver.checkpoint()
            self.store.complete(batch)
        self.outbox.send(MsgType.RESULT, batch)

    def _delivered(self, msg_type: MsgType, items: list[dict]) -> None:
        """Delivery marks are batched too; losing them in a crash only means a re-send."""
        if msg_type is MsgType.RESULT:
            self._sent_ids.extend(item["op"] for item in items)
            if self._sent_timer is None:
                self._sent_timer = self.loop.call_later(SENT_MARK_DELAY_S, self._mark_sent)

    def _mark_sent(self) -> None:
        if self._sent_timer:
            self._sent_timer.cancel()
            self._sent_timer = None
        ids, self._sent_ids = self._sent_ids, []
        if ids:
            self.store.mark_sent(ids)

    def _emit_event(self, device: dict, kind: str, data: dict) -> None:
        item = {"device": device, "kind": str(kind), "ts": now_ms(), "data": data}
        try:
            schema.event_item(item)
        except ProtocolError as e:
            log.warning("%s: dropped an invalid event: %s", self.uid, e)
            return
        self.outbox.add(MsgType.EVENT, item)

    async def _prune_forever(self) -> None:
        while True:
            self.store.prune(self.config.result_retention_days * 86400)
            await asyncio.sleep(PRUNE_EVERY_S)

    # -- start and stop -----------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self.outbox = Outbox(
            self.client,
            self.uid,
            self.config.secret,
            window_s=self.config.batch_window_ms / 1000,
            max_inflight=self.config.max_inflight,
            on_delivered=self._delivered,
        )
        await self.driver.start(self._emit_event)
        self.outbox.send(MsgType.RESULT, self.store.unsent_results())  # lost in the last run
        for op in self.store.pending_ops():  # accepted but unfinished in the last run
            self._spawn(self._run(op))
        self._spawn(self._prune_forever())
        cfg = self.config
        self.client.connect_async(cfg.broker.hostname, cfg.broker_port, keepalive=cfg.keepalive_s)
        self.client.loop_start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Finish politely: results written, queued messages delivered, offline announced."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._commit_finished()
        if self.connected.is_set():
            await self.outbox.drain(timeout)
            info = self.client.publish(
                topic(self.uid, MsgType.STATUS),
                self._status(GatewayStatus.OFFLINE),
                qos=1,
                retain=True,
            )
            try:
                await asyncio.to_thread(info.wait_for_publish, timeout)
            except (ValueError, RuntimeError) as e:
                log.warning("%s: offline status not sent: %s", self.uid, e)
        self.client.disconnect()
        self.client.loop_stop()
        self._mark_sent()
        await self.driver.stop()
        self.store.close()
