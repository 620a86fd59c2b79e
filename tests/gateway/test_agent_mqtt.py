"""The agent as a real program against real Mosquitto: round trip, restart, crash, broker restart.

Each test uses its own gateway uid, so parallel runs on one broker do not collide.
"""

import json
import signal
import time
import uuid

import pytest

from gateway.protocol import MsgType, Reason
from tests.gateway.portal_double import PortalDouble, free_port, start_agent, start_broker

pytestmark = pytest.mark.services


def _setup(tmp_path, port=1883, **driver_options):
    uid = f"it-{uuid.uuid4().hex[:12]}"
    secret = uuid.uuid4().hex
    config = {
        "gateway_uid": uid,
        "secret": secret,
        "state_dir": str(tmp_path / "state"),
        "broker_url": f"mqtt://127.0.0.1:{port}",
        "concurrency": 64,
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
        "driver_options": {"latency_ms": 2, **driver_options},
    }
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps(config))
    return uid, secret, path


def _ops(uid, ids, kind="provision"):
    return [
        {"op": f"op-{i}", "kind": kind, "device": {"serial": f"SIM-{uid}-{i:05d}"}} for i in ids
    ]


def _online(portal):
    return portal.wait_for(lambda m: m.type is MsgType.STATUS and m.body["state"] == "online")


def _offline(portal):
    return portal.wait_for(lambda m: m.type is MsgType.STATUS and m.body["state"] == "offline")


def _stop(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    proc.wait(timeout=15)


def test_round_trip_restart_and_idempotency(tmp_path):
    uid, secret, config = _setup(tmp_path, devices=500)
    portal = PortalDouble(uid, secret)
    agent = start_agent(config)
    try:
        session = _online(portal).body["session"]
        hello = portal.wait_for(lambda m: m.type is MsgType.HELLO)
        assert hello.body["devices"] == 500 and hello.body["session"] == session
        assert hello.body["link"] == "ok" and "load_image" in hello.body["kinds"]
        discovered = portal.wait_for(lambda m: m.type is MsgType.DISCOVERY)
        assert len(discovered.items) == 500 and discovered.items[0]["state"] == "factory"

        ids = range(1, 501)
        started = time.perf_counter()
        portal.command(_ops(uid, ids))
        first = portal.results({f"op-{i}" for i in ids})
        round_trip = time.perf_counter() - started
        assert all(r["ok"] and r["device"]["state"] == "provisioned" for r in first.values())
        print(f"\n500-operation batch round trip: {round_trip * 1000:.0f} ms")

        _stop(agent)
        offline = _offline(portal)
        assert offline.body == {"state": "offline", "session": session, "will": False}

        agent = start_agent(config)
        _online(portal)
        portal.command(_ops(uid, ids))
        again = portal.results({f"op-{i}" for i in ids})
        assert again == first  # the stored results, "at" included: nothing ran twice

        portal.command(_ops(uid, [1, 600], kind="deprovision"))  # op-1 is known, op-600 is new
        mixed = portal.results({"op-1", "op-600"})
        assert mixed["op-1"] == first["op-1"]
        assert mixed["op-600"]["code"] == "not_found"  # only 500 devices

        _stop(agent, signal.SIGKILL)
        will = _offline(portal)
        assert will.body["will"] is True
        assert portal.rejected == []
    finally:
        if agent.poll() is None:
            _stop(agent)  # politely: a last will published later would stay retained
        portal.clear_retained()
        portal.close()


def test_crash_mid_batch_resumes_accepted_operations(tmp_path):
    uid, secret, config = _setup(tmp_path, devices=40, latency_ms=400)
    portal = PortalDouble(uid, secret)
    agent = start_agent(config)
    try:
        _online(portal)
        ids = {f"op-{i}" for i in range(1, 41)}
        portal.command(_ops(uid, range(1, 41)))
        time.sleep(0.2)  # accepted and running, none finished
        _stop(agent, signal.SIGKILL)
        agent = start_agent(config)
        results = portal.results(ids)
        assert all(r["ok"] for r in results.values())
    finally:
        if agent.poll() is None:
            _stop(agent)  # politely: a last will published later would stay retained
        portal.clear_retained()
        portal.close()


def test_broker_restart_loses_no_result(tmp_path):
    port = free_port()
    broker = start_broker(port, tmp_path)
    uid, secret, config = _setup(tmp_path, port=port, devices=200, latency_ms=800)
    portal = PortalDouble(uid, secret, port=port, persistent=True)
    agent = start_agent(config)
    try:
        _online(portal)
        ids = {f"op-{i}" for i in range(1, 201)}
        portal.command(_ops(uid, range(1, 201)))
        time.sleep(0.3)  # the agent has the batch; results are due in ~0.5 s
        _stop(broker)  # Mosquitto restarts mid-stream
        time.sleep(1.0)
        broker = start_broker(port, tmp_path)
        results = portal.results(ids, timeout=30)
        assert len(results) == 200 and all(r["ok"] for r in results.values())
        # The restarted broker may deliver a message twice (QoS 1); the copy is refused.
        assert all(e.reason is Reason.REPLAYED for e in portal.rejected)
    finally:
        if agent.poll() is None:
            _stop(agent, signal.SIGKILL)
        portal.close()
        _stop(broker)


def test_each_connection_has_its_own_session_and_its_will_names_it(tmp_path):
    """The portal applies a will only while its session is current (section 2): the
    will of a dropped connection arriving after the reconnect must not match."""
    port = free_port()
    broker = start_broker(port, tmp_path)
    uid, secret, config = _setup(tmp_path, port=port, devices=2)
    portal = PortalDouble(uid, secret, port=port, persistent=True)
    agent = start_agent(config)
    try:
        first = _online(portal).body["session"]
        _stop(broker)
        broker = start_broker(port, tmp_path)
        second = _online(portal).body["session"]
        assert second != first
        hello = portal.wait_for(lambda m: m.type is MsgType.HELLO)
        assert hello.body["session"] == second
        _stop(agent, signal.SIGKILL)
        will = _offline(portal)
        assert will.body == {"state": "offline", "session": second, "will": True}
    finally:
        if agent.poll() is None:
            _stop(agent, signal.SIGKILL)
        portal.close()
        _stop(broker)
