"""The gateway link on a second broker: RabbitMQ 3.10's MQTT plugin instead of Mosquitto.

The real agent (its own process), the bridge, an RQ worker: hello, discovery, events, a
provisioning and its results, the retained status, the last will after a SIGKILL, and
the bridge's persistent session across a restart. What RabbitMQ lacks (shared
subscriptions, retained messages on wildcard subscriptions) is in docs/deploy.md.
"""

import json
import signal
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from devices import operations
from devices.bridge import Bridge
from devices.choices import DeviceState
from devices.lifecycle import Action
from devices.models import BulkOperation, Device, DeviceEvent, Gateway
from gateway.protocol import Message, MsgType, decode, encode, now_ms, topic
from tests import processes, rabbitmq
from tests.factories import make_gateway, make_license, make_member, make_organization
from tests.gateway.portal_double import start_agent
from tests.test_bridge import wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.rabbitmq,
    pytest.mark.django_db(transaction=True),
]

DEVICES = 12


@pytest.fixture(scope="module")
def broker():
    return rabbitmq.mqtt_port()


@pytest.fixture
def gateway(broker):
    org = make_organization()
    uid = f"rmq-{uuid.uuid4().hex[:10]}"
    secret, password = uuid.uuid4().hex, uuid.uuid4().hex
    rabbitmq.add_user(uid, password, own_topics=True)
    gw = make_gateway(org, uid=uid, secret=secret)
    yield gw, password
    rabbitmq.delete_user(uid)


def run_bridge(client_id):
    bridge = Bridge(client_id=client_id, batch_window=0.02, url=rabbitmq.url())
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.connected.wait(15), "the bridge did not connect to RabbitMQ"
    time.sleep(0.3)  # the SUBSCRIBE is in flight right after CONNACK
    return bridge, thread


def stop_bridge(bridge, thread):
    bridge.stop()
    thread.join(30)


def retained_status(uid, secret):
    """What a client subscribing now to the gateway's status topic is handed at once."""
    got = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex}")
    client.username_pw_set(rabbitmq.PORTAL_USER, rabbitmq.PORTAL_PASSWORD)
    client.on_message = lambda c, u, m: got.append(m)
    client.connect("127.0.0.1", rabbitmq.PORT)
    client.loop_start()
    try:
        client.subscribe(topic(uid, MsgType.STATUS), qos=1)
        assert wait_for(lambda: got, 10), "no retained status"
    finally:
        client.disconnect()
        client.loop_stop()
    message = got[0]
    assert message.retain
    return decode(message.topic, message.payload, lambda _uid: secret, None).body


def test_agent_and_bridge_round_trip_on_rabbitmq(gateway, tmp_path):
    gw, password = gateway
    org = gw.organization
    user = make_member(org, ["administrator"])
    make_license(org, seats=DEVICES)
    config = tmp_path / "gateway.json"
    config.write_text(
        json.dumps(
            {
                "gateway_uid": gw.uid,
                "secret": gw.secret,
                "state_dir": str(tmp_path / "state"),
                "broker_url": f"mqtt://127.0.0.1:{rabbitmq.PORT}",
                "broker_password": password,
                "reconnect_min_s": 1,
                "reconnect_max_s": 2,
                "keepalive_s": 5,
                "driver_options": {"devices": DEVICES, "latency_ms": 2, "events_per_s": 20},
            }
        )
    )
    client_id = f"fleetgate-bridge-{uuid.uuid4().hex[:8]}"
    bridge, thread = run_bridge(client_id)
    worker = processes.worker({"MQTT_URL": rabbitmq.url()})
    agent = start_agent(config)
    try:
        # Hello, discovery, events.
        assert wait_for(lambda: Gateway.objects.get(pk=gw.pk).is_online, 30), dict(bridge.stats)
        assert Gateway.objects.get(pk=gw.pk).agent_info["driver"] == "simulated"
        assert wait_for(lambda: Device.objects.filter(gateway=gw).count() == DEVICES, 30)
        assert wait_for(lambda: DeviceEvent.objects.filter(device__gateway=gw).exists(), 30)

        # A provisioning: the worker's commands, the agent's results.
        bulk, _plan = operations.start(
            org, user, Action.PROVISION, Device.objects.filter(gateway=gw), "all"
        )
        assert wait_for(lambda: not BulkOperation.objects.get(pk=bulk.pk).is_running, 60)
        bulk.refresh_from_db()
        assert bulk.done == DEVICES and bulk.failed == 0
        states = set(Device.objects.filter(gateway=gw).values_list("state", flat=True))
        assert states == {DeviceState.PROVISIONED}

        # The retained status: a newcomer learns the gateway is online.
        assert retained_status(gw.uid, gw.secret)["state"] == "online"

        # The bridge's persistent session: what arrives while it is away waits for it.
        stop_bridge(bridge, thread)
        marker = uuid.uuid4().hex
        publish_as_gateway(gw, password, marker)
        bridge, thread = run_bridge(client_id)
        assert wait_for(lambda: DeviceEvent.objects.filter(data__marker=marker).exists(), 30), dict(
            bridge.stats
        )

        # The last will: the broker announces the agent's death, and keeps it retained.
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert wait_for(lambda: not Gateway.objects.get(pk=gw.pk).is_online, 30), dict(bridge.stats)
        status = retained_status(gw.uid, gw.secret)
        assert status["state"] == "offline" and status["will"] is True
        assert not any(k.startswith("rejected") for k in bridge.stats), dict(bridge.stats)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        processes.stop(worker)
        stop_bridge(bridge, thread)


def publish_as_gateway(gw, password, marker):
    serial = Device.objects.filter(gateway=gw).values_list("serial_number", flat=True)[0]
    event = {
        "device": {"serial": serial},
        "kind": "alarm",
        "ts": now_ms(),
        "data": {"marker": marker},
    }
    payload = encode(Message(MsgType.EVENT, gw.uid, {"events": [event]}), gw.secret)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"as-{uuid.uuid4().hex}")
    client.username_pw_set(gw.uid, password)
    client.connect("127.0.0.1", rabbitmq.PORT)
    client.loop_start()
    try:
        client.publish(topic(gw.uid, MsgType.EVENT), payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_broker_check_tells_what_rabbitmq_lacks(broker):
    """The documented gaps of RabbitMQ 3.10, found by ``manage.py broker_check``."""
    from devices.broker_check import check

    assert check(rabbitmq.url()) == {
        "qos1": True,
        "persistent_session": True,
        "retained": True,
        "last_will": True,
        "shared_subscription": False,  # several bridges: not on RabbitMQ
        "retained_wildcard": False,  # retained only for exact topic filters
    }
