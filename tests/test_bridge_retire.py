"""Retiring one bridge of a shared group: its queued share is written, then its session ends.

Mosquitto keeps handing an offline member of a shared subscription its share of the
messages (queued in its persistent session), so a bridge that will not come back must
be retired (docs/deploy.md, "Removing a bridge"), not just stopped. A private broker:
the test stops bridges and counts every message.
"""

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from devices.bridge import Bridge
from devices.models import DeviceEvent
from gateway.protocol import Message, MsgType, encode, now_ms, topic
from tests.factories import make_device, make_gateway, make_organization
from tests.gateway.portal_double import free_port, start_broker
from tests.test_bridge import wait_for

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

GROUP = "retire-test"


@pytest.fixture
def broker(tmp_path, settings):
    port = free_port()
    process = start_broker(port, tmp_path)
    settings.MQTT_URL = f"mqtt://127.0.0.1:{port}"
    yield port
    process.terminate()
    process.wait(10)


def start_bridge(client_id):
    bridge = Bridge(client_id=client_id, shared_group=GROUP, batch_window=0.02)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.connected.wait(10)
    time.sleep(0.3)  # the SUBSCRIBE is in flight right after CONNACK
    return bridge, thread


def publish(port, gw, serial, marks):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for mark in marks:
            event = {
                "device": {"serial": serial},
                "kind": "log",
                "ts": now_ms(),
                "data": {"m": mark},
            }
            payload = encode(Message(MsgType.EVENT, gw.uid, {"events": [event]}), gw.secret)
            client.publish(topic(gw.uid, MsgType.EVENT), payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def written(marks):
    return DeviceEvent.objects.filter(data__m__in=marks).count()


def test_a_retired_bridge_writes_its_queued_share_and_leaves_the_group(broker):
    org = make_organization()
    gw = make_gateway(org, uid=f"gw-{uuid.uuid4().hex[:10]}", secret="r" * 32)
    serial = make_device(org, gateway=gw).serial_number
    staying, staying_thread = start_bridge("bridge-staying")
    leaving, leaving_thread = start_bridge("bridge-leaving")
    leaving.stop()
    leaving_thread.join(30)
    try:
        first = [f"a{i}" for i in range(20)]
        publish(broker, gw, serial, first)
        # The stopped bridge's share waits in its session: only part arrives.
        assert wait_for(lambda: written(first) >= 1, 10)
        time.sleep(1.0)
        assert 0 < written(first) < len(first), "the offline member got no share"

        call_command(
            "run_bridge", "--retire", "--client-id", "bridge-leaving", "--shared-group", GROUP
        )
        assert written(first) == len(first)

        # The group is one bridge now: everything arrives without the retired one.
        second = [f"b{i}" for i in range(20)]
        publish(broker, gw, serial, second)
        assert wait_for(lambda: written(second) == len(second), 15), written(second)
        assert DeviceEvent.objects.filter(data__m__in=first + second).count() == 40
    finally:
        staying.stop()
        staying_thread.join(30)
