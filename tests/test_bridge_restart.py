"""Mosquitto restarts mid-stream: the agent and the bridge reconnect by themselves, and no
event or result is lost (QoS 1, persistent sessions, idempotent handling).

A private broker (``tests.gateway.portal_double.start_broker``: its own port, config and
persistence directory) is stopped and started again on the same port while a real
gateway agent (simulated driver, telemetry on) runs a provisioning batch and streams
events, and a real bridge writes both to the database. The shared broker on 1883 is
never touched.

SIGTERM: Mosquitto saves its sessions and queued messages on the way out, so nothing
is lost and nothing needs re-sending. SIGKILL: Mosquitto acknowledges a message before
it is saved (it saves at shutdown and every ``autosave_interval``), so the restarted
broker has forgotten the bridge's subscription and whatever it held; messages the agent
sends before the bridge has subscribed again are dropped. Results still all arrive,
exactly once, because the reconciler re-sends unanswered operations under the same id
and the gateway answers from its memory; events are best effort there (counted).

The test plays the RQ worker and the reconciler by calling ``devices.jobs.dispatch``
and ``devices.operations.reconcile`` itself, with the worker's command publisher
pointed at the private broker: a worker on the shared "default" queue could have its
job taken by another run's worker.
"""

import asyncio
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import transaction

from devices import ingest, jobs, operations
from devices.bridge import Bridge
from devices.choices import DeviceState, OperationState
from devices.lifecycle import Action
from devices.models import Device, DeviceEvent, Gateway, Operation
from gateway.agent import Agent
from gateway.config import AgentConfig
from tests.factories import make_gateway, make_license, make_member, make_organization
from tests.gateway.portal_double import free_port, start_broker

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

DEVICES = 120


def wait_for(predicate, timeout=30.0, what="condition", detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} {detail()}")


class AgentThread:
    """A real ``gateway.agent.Agent`` on its own event loop in a thread.

    It notes every event its driver emits (the sink the driver is given), so the test
    knows exactly what was sent.
    """

    def __init__(self, config: AgentConfig):
        self.agent = Agent(config)
        self.emitted: list[int] = []
        sink = self.agent._emit_event

        def noting(device, kind, data):
            self.emitted.append(data["seq"])
            sink(device, kind, data)

        self.agent._emit_event = noting
        self.started = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.agent.start()
        self.started.set()
        await self._stop.wait()
        await self.agent.stop(timeout=20)  # a loaded CI machine may need more than 5 s

    def start(self):
        self.thread.start()
        assert self.started.wait(10), "the agent did not start"

    @property
    def connected(self) -> bool:
        return self.agent.connected.is_set()

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(40)


@pytest.fixture
def result_deliveries():
    """Result op ids as their batch commits, once per delivery: duplicates show here."""
    seen: list[str] = []

    def note(batch, now):
        ops = [item["op"] for _gateway, items in batch for item in items]
        transaction.on_commit(lambda: seen.extend(ops))
        return ingest.Changes()

    ingest.RESULT_HANDLERS.append(note)
    yield seen
    ingest.RESULT_HANDLERS.remove(note)


@pytest.mark.parametrize(
    "kill", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill-reconciler"]
)
def test_broker_restart_mid_stream_loses_nothing(
    tmp_path, settings, monkeypatch, result_deliveries, kill
):
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    broker = start_broker(port, broker_dir)
    organization = make_organization()
    user = make_member(organization, ["administrator"])
    make_license(organization, seats=DEVICES)
    uid, secret = f"rs-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    gateway = make_gateway(organization, uid=uid, secret=secret)

    settings.MQTT_URL = url  # the worker's command publisher talks to the private broker
    # After a SIGKILL the reconciler re-sends what was not answered within 3 s.
    settings.OPERATIONS = {**settings.OPERATIONS, "ANSWER_TIMEOUT_S": 3.0}
    crash = kill is signal.SIGKILL
    publisher = jobs.CommandPublisher()
    monkeypatch.setattr(jobs.CommandPublisher, "_instance", publisher)
    bridge = Bridge(client_id=f"test-bridge-{uuid.uuid4().hex}", batch_window=0.02, url=url)
    bridge_thread = threading.Thread(target=bridge.run, daemon=True)
    agent = AgentThread(
        AgentConfig(
            gateway_uid=uid,
            secret=secret,
            state_dir=tmp_path / "agent",
            broker_url=url,
            # 120 operations, 4 at a time, 50 ms each: results stream for ~1.5 s.
            driver_options={"devices": DEVICES, "latency_ms": 50, "events_per_s": 100},
            concurrency=4,
            reconnect_min_s=1,
            reconnect_max_s=2,
        )
    )

    def persisted_events():
        return DeviceEvent.objects.filter(gateway=gateway).count()

    def stored_seqs():
        rows = DeviceEvent.objects.filter(gateway=gateway).values_list("data", flat=True)
        return Counter(data["seq"] for data in rows)

    def done():
        return Operation.objects.filter(gateway=gateway, state=OperationState.DONE).count()

    reconciled = {"at": 0.0, "resent": 0}

    def reconciler_and_worker():
        """``run_reconciler`` and the worker's dispatch job, one pass at most twice a second."""
        if crash and time.monotonic() - reconciled["at"] > 0.5:
            reconciled["at"] = time.monotonic()
            result, _changes = operations.reconcile()
            reconciled["resent"] += result.resent
            for gateway_id in result.gateways:
                jobs.dispatch(gateway_id)
        return done() == DEVICES

    try:
        bridge_thread.start()
        wait_for(bridge.connected.is_set, 10, "the bridge to connect")
        agent.start()
        devices = Device.objects.for_organization(organization)
        wait_for(lambda: devices.count() == DEVICES, 20, "the agent's discovery")
        wait_for(lambda: Gateway.objects.get(pk=gateway.pk).is_online, 10, "the gateway online")

        bulk, _plan = operations.start(organization, user, Action.PROVISION, devices, "all")
        assert jobs.dispatch(gateway.pk)["sent"] == DEVICES  # what the RQ worker would do
        wait_for(lambda: done() >= 10 and persisted_events() >= 50, 20, "a steady stream")

        broker.send_signal(kill)  # Mosquitto goes away mid-stream
        broker.wait(10)
        wait_for(
            lambda: not bridge.connected.is_set() and not agent.connected, 10, "both to notice"
        )
        # Stay away a while; after a crash, long enough (~3 s) that the bridge's growing
        # reconnect back-off lets the agent return first, into a broker that forgot it.
        away = 300 if crash else 20
        emitted_at_kill = len(agent.emitted)
        wait_for(lambda: len(agent.emitted) >= emitted_at_kill + away, 10, "events while away")
        broker = start_broker(port, broker_dir)  # same port, same persistence directory

        # Nobody in the test reconnects anything: paho does, in the bridge and the agent.
        wait_for(lambda: bridge.connected.is_set() and agent.connected, 30, "both to reconnect")
        wait_for(
            reconciler_and_worker,
            30,
            "every operation's result",
            lambda: (
                f"(done {done()}, results delivered {len(set(result_deliveries))}, "
                f"agent {dict(agent.agent.stats)}, bridge {dict(bridge.stats)})"
            ),
        )
        after = persisted_events()
        wait_for(lambda: persisted_events() >= after + 50, 20, "events to flow again")
        wait_for(lambda: Gateway.objects.get(pk=gateway.pk).is_online, 10, "the gateway online")

        agent.stop()  # drains its outbox: everything it emitted is delivered
        emitted = Counter(agent.emitted)
        if not crash:
            wait_for(
                lambda: emitted.keys() <= stored_seqs().keys(),
                30,
                "every event stored",
                lambda: (
                    f"missing {sorted(emitted.keys() - stored_seqs().keys())[:20]} of "
                    f"{len(emitted)}; agent {dict(agent.agent.stats)}, bridge {dict(bridge.stats)}"
                ),
            )
    finally:
        agent.stop()
        publisher.client.disconnect()
        publisher.client.loop_stop()
        bridge.stop()
        bridge_thread.join(10)
        if broker.poll() is None:
            broker.terminate()
            broker.wait(10)

    rows = stored_seqs()
    bulk.refresh_from_db()
    deliveries = Counter(result_deliveries)
    lost = emitted.keys() - rows.keys()
    print(
        f"\n{kill.name}: {len(emitted)} events, {DEVICES} results; events lost {len(lost)}; "
        f"re-sent after a lost acknowledgement and stored again: "
        f"{sum(n - 1 for n in rows.values())} events; results delivered more than once "
        f"(ignored): {sum(n > 1 for n in deliveries.values())}; operations re-sent by the "
        f"reconciler: {reconciled['resent']}; bridge {dict(bridge.stats)}"
    )
    # Results: every operation finished exactly once (the counters move with the rows),
    # and no device was operated twice.
    assert (bulk.done, bulk.failed, bulk.total) == (DEVICES, 0, DEVICES)
    assert set(devices.values_list("state", flat=True)) == {DeviceState.PROVISIONED}
    assert agent.agent.stats["executed"] == DEVICES
    # Events: none invented, and after a clean broker stop none lost either.
    assert max(emitted.values()) == 1
    assert not rows.keys() - emitted.keys(), "events nobody sent"
    if not crash:
        assert not lost, "events lost"
        assert set(Operation.objects.filter(bulk=bulk).values_list("attempts", flat=True)) == {1}
    assert bridge.stats["connects"] >= 2
    refused = {k for k in bridge.stats if k.startswith("rejected.")} - {"rejected.replayed"}
    assert not refused, dict(bridge.stats)
