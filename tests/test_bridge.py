"""The bridge against the real Mosquitto and Redis: messages in, rows and live updates out."""

import time
import uuid

import pytest

from devices.choices import DeviceState
from devices.models import Device, DeviceEvent, Gateway
from gateway.protocol import Message, MsgType, encode, new_id, now_ms, topic
from tests.factories import make_device, make_device_type, make_gateway

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SECRET = "s3cret-for-tests-only"


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def send(publisher, uid, msg_type, body, secret=SECRET, **envelope):
    payload = encode(Message(msg_type, uid, body, **envelope), secret)
    publisher.publish(topic(uid, msg_type), payload, qos=1).wait_for_publish(5)
    return payload


def hello(session="0" * 32):
    return {
        "agent": "test/1",
        "driver": "simulated",
        "session": session,
        "devices": 2,
        "kinds": ["provision"],
        "link": "ok",
    }


@pytest.fixture
def gw(org):
    return make_gateway(org, uid=f"gw-{uuid.uuid4().hex[:12]}", secret=SECRET)


def test_hello_discovery_and_events_are_persisted(bridge, publisher, org, gw):
    device_type = make_device_type(name=f"BLE {uuid.uuid4().hex[:6]}")
    send(publisher, gw.uid, MsgType.HELLO, hello())
    send(
        publisher,
        gw.uid,
        MsgType.DISCOVERY,
        {
            "devices": [
                {
                    "serial": "SN-1",
                    "hardware_id": "aa:bb:cc:00:00:01",
                    "device_type": device_type.name,
                },
                {"serial": "SN-2", "device_type": "something unknown"},
            ]
        },
    )
    assert wait_for(lambda: Device.objects.filter(organization=org).count() == 2)
    one = Device.objects.get(organization=org, serial_number="SN-1")
    assert one.state == DeviceState.DISCOVERED
    assert one.gateway_id == gw.id and one.device_type_id == device_type.id
    assert one.hardware_id == "AA:BB:CC:00:00:01"
    gateway = Gateway.objects.get(pk=gw.pk)
    assert gateway.is_online and gateway.last_seen and gateway.agent_info["driver"] == "simulated"

    events = [
        {"device": {"serial": "SN-1"}, "kind": "telemetry", "ts": now_ms(), "data": {"lux": i}}
        for i in range(300)
    ]
    send(publisher, gw.uid, MsgType.EVENT, {"events": events})
    assert wait_for(lambda: DeviceEvent.objects.filter(device=one).count() == 300)


def test_offline_status_marks_the_gateway_offline(bridge, publisher, gw):
    send(publisher, gw.uid, MsgType.HELLO, hello(session="2" * 32))
    assert wait_for(lambda: Gateway.objects.get(pk=gw.pk).is_online)
    send(publisher, gw.uid, MsgType.STATUS, {"state": "offline", "session": "2" * 32, "will": True})
    assert wait_for(lambda: not Gateway.objects.get(pk=gw.pk).is_online)


def test_bad_messages_are_counted_by_reason_and_the_bridge_keeps_going(bridge, publisher, org, gw):
    other_gw = make_gateway(org, uid=f"gw-{uuid.uuid4().hex[:12]}", secret="other")
    theirs = make_device(org, serial_number="THEIRS-1", gateway=other_gw)
    uid = gw.uid
    publisher.publish(topic(uid, MsgType.EVENT), b"{not json", qos=1)  # unsigned
    send(publisher, uid, MsgType.HELLO, hello(), secret="wrong-secret")  # forged
    send(publisher, "gw-nobody-knows", MsgType.HELLO, hello())  # unknown gateway
    replayed = send(publisher, uid, MsgType.HELLO, hello())
    publisher.publish(topic(uid, MsgType.HELLO), replayed, qos=1).wait_for_publish(5)
    send(publisher, uid, MsgType.HELLO, hello(), ts=now_ms() - 3_600_000, id=new_id())  # stale
    publisher.publish(topic(uid, MsgType.EVENT), b"x" * (300 * 1024), qos=1)  # oversized
    send(  # speaks for another gateway's device
        publisher,
        uid,
        MsgType.EVENT,
        {"events": [{"device": {"serial": theirs.serial_number}, "kind": "alarm", "ts": now_ms()}]},
    )
    send(publisher, uid, MsgType.DISCOVERY, {"devices": [{"serial": "FINE-1"}]})  # still works

    expected = {
        "rejected.bad_signature": 2,
        "rejected.unknown_gateway": 1,
        "rejected.replayed": 2,
        "rejected.oversized": 1,
        "rejected.foreign_device": 1,
    }
    assert wait_for(
        lambda: (
            all(bridge.stats[k] >= v for k, v in expected.items())
            and Device.objects.filter(serial_number="FINE-1").exists()
        )
    ), dict(bridge.stats)
    assert not DeviceEvent.objects.filter(device=theirs).exists()


def test_unenrolled_device_seen_again_is_rediscovered(bridge, publisher, org, gw):
    device = make_device(org, serial_number="BACK-1", gateway=gw, state=DeviceState.UNENROLLED)
    send(publisher, gw.uid, MsgType.DISCOVERY, {"devices": [{"serial": "BACK-1"}]})
    assert wait_for(lambda: Device.objects.get(pk=device.pk).state == DeviceState.DISCOVERED)


def test_a_stale_last_will_does_not_take_a_reconnected_gateway_offline(bridge, publisher, gw):
    send(publisher, gw.uid, MsgType.HELLO, hello(session="1" * 32))
    assert wait_for(lambda: Gateway.objects.get(pk=gw.pk).is_online)
    # The will of the previous connection (session 0...) arrives late.
    send(publisher, gw.uid, MsgType.STATUS, {"state": "offline", "session": "0" * 32, "will": True})
    send(publisher, gw.uid, MsgType.DISCOVERY, {"devices": [{"serial": "AFTER-WILL"}]})
    assert wait_for(lambda: Device.objects.filter(serial_number="AFTER-WILL").exists())
    assert Gateway.objects.get(pk=gw.pk).is_online


def test_discovery_records_what_a_device_says_of_itself(bridge, publisher, org, gw):
    known = make_device(org, serial_number="KNOWN-1", gateway=gw, state=DeviceState.DISCOVERED)
    devices = [
        {"serial": "NEW-1", "state": "provisioned"},
        {"serial": "KNOWN-1", "state": "factory"},
    ]
    send(publisher, gw.uid, MsgType.DISCOVERY, {"devices": devices})
    assert wait_for(lambda: Device.objects.filter(serial_number="NEW-1").exists())
    assert wait_for(lambda: Device.objects.get(pk=known.pk).reported_state == "factory")
    assert Device.objects.get(serial_number="NEW-1").reported_state == "provisioned"
