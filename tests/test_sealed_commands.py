"""The portal seals access keys when it publishes commands: the broker never sees them.

The RQ job's publisher (``devices.jobs.CommandPublisher``) against the real Mosquitto,
with another client of the broker listening to the gateway's command topic.
"""

import queue
import uuid

import paho.mqtt.client as mqtt
import pytest

from devices.jobs import CommandPublisher
from gateway.protocol import SEALED, MsgType, decode, open_params, topic

pytestmark = pytest.mark.services


@pytest.fixture
def sniffer():
    seen: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sniff-{uuid.uuid4().hex}")
    subscribed = queue.Queue()
    client.on_subscribe = lambda *a: subscribed.put(True)
    client.on_message = lambda c, u, m: seen.put((m.topic, bytes(m.payload)))
    client.connect("127.0.0.1", 1883)
    client.loop_start()

    def listen(uid):
        client.subscribe(topic(uid, MsgType.COMMAND), qos=1)
        subscribed.get(timeout=10)
        return seen

    yield listen
    client.disconnect()
    client.loop_stop()


def test_published_commands_carry_the_access_key_sealed(settings, sniffer):
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    uid, secret = f"seal-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    keys = {f"SN-{i}": f"KEY-{uuid.uuid4().hex[:12].upper()}" for i in range(3)}
    items = [
        {
            "op": f"{uuid.uuid4().hex}-0",
            "kind": "enroll",
            "device": {"serial": serial},
            "params": {"device_type": "Sensor", "code": key},
        }
        for serial, key in keys.items()
    ]
    seen = sniffer(uid)
    publisher = CommandPublisher()
    try:
        assert publisher.publish(uid, secret, items) == 1
        topic_name, payload = seen.get(timeout=10)
    finally:
        publisher.client.disconnect()
        publisher.client.loop_stop()
    assert not any(key.encode() in payload for key in keys.values())
    msg = decode(topic_name, payload, {uid: secret}.get, None)
    assert all(SEALED in op["params"] for op in msg.items)
    opened = {op["device"]["serial"]: open_params(op, uid, secret)["code"] for op in msg.items}
    assert opened == keys
