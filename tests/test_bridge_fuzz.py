"""10,000 random and mutated messages through the bridge's real decode-and-write path.

The bridge must never raise, must account for every message (accepted, or rejected
and counted by reason), and must keep accepting good messages in between.
"""

import random

import pytest

from devices.bridge import Bridge
from devices.models import DeviceEvent
from gateway.protocol import MAX_PAYLOAD_BYTES, Message, MsgType, encode, new_id, now_ms, topic
from tests.factories import make_device, make_gateway, make_organization

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "fuzz-secret"
TOTAL = 10_000


def good(uid, rng):
    kind = rng.choice(["hello", "discovery", "event"])
    if kind == "hello":
        body = {
            "agent": "fuzz/1",
            "driver": "simulated",
            "session": new_id(),
            "devices": rng.randint(0, 50),
            "kinds": ["provision"],
            "link": "ok",
        }
        return Message(MsgType.HELLO, uid, body)
    if kind == "discovery":
        devices = [{"serial": f"FZ-{rng.randint(1, 300)}"} for _ in range(rng.randint(1, 5))]
        return Message(MsgType.DISCOVERY, uid, {"devices": devices})
    events = [
        {
            "device": {"serial": f"FZ-{rng.randint(1, 300)}"},
            "kind": "telemetry",
            "ts": now_ms(),
            "data": {"v": rng.random()},
        }
        for _ in range(rng.randint(1, 5))
    ]
    return Message(MsgType.EVENT, uid, {"events": events})


def mutate(payload: bytes, rng) -> bytes:
    data = bytearray(payload)
    choice = rng.randrange(4)
    if choice == 0 and data:  # flip bytes
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:  # truncate
        data = data[: rng.randrange(len(data))]
    elif choice == 2:  # random junk
        data = bytearray(rng.randbytes(rng.randint(0, 300)))
    else:  # splice in JSON-ish noise
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.choice([b'"', b"{", b"}", b"null", b"\\u0000", b",", b"1e999"])
    return bytes(data)


def test_ten_thousand_hostile_messages_are_all_accounted_for():
    org = make_organization()
    gw = make_gateway(org, uid="fuzz-gw", secret=SECRET)
    other = make_gateway(org, uid="fuzz-other", secret="other-secret")
    make_device(org, serial_number="FOREIGN-1", gateway=other)
    bridge = Bridge(client_id="fuzz-bridge", publish_live=False)
    bridge.directory.refresh()
    rng = random.Random(20261122)
    sent: list = []
    previous = None
    for i in range(TOTAL):
        roll = rng.random()
        msg = good(gw.uid, rng)
        payload = encode(msg, SECRET)
        t = topic(gw.uid, msg.type)
        if roll < 0.25:
            pass  # a good message
        elif roll < 0.45:
            payload = mutate(payload, rng)
        elif roll < 0.52:
            payload = encode(good(gw.uid, rng), "not-the-secret")
        elif roll < 0.58:
            t = topic("nobody-knows-me", msg.type)
        elif roll < 0.64 and previous:
            t, payload = previous
        elif roll < 0.69:
            payload = payload + b" " * (MAX_PAYLOAD_BYTES + 1 - len(payload))
        elif roll < 0.74:
            payload = encode(Message(msg.type, gw.uid, msg.body, ts=now_ms() - 3_600_000), SECRET)
        elif roll < 0.80:
            foreign = {
                "events": [{"device": {"serial": "FOREIGN-1"}, "kind": "alarm", "ts": now_ms()}]
            }
            payload = encode(Message(MsgType.EVENT, gw.uid, foreign), SECRET)
            t = topic(gw.uid, MsgType.EVENT)
        elif roll < 0.85:
            t = t.replace("/v1/", "/v9/")
        elif roll < 0.92:
            t = rng.choice(["fleetgate/v1/gw", "x/y", "fleetgate/v1/gw/fuzz-gw/nope", ""])
        else:
            payload = mutate(payload, rng)
            t = topic(gw.uid, rng.choice(list(MsgType)))
        previous = (t, payload)
        sent.append((t, payload, i, 0, False))

    for start in range(0, TOTAL, 500):
        bridge.process(sent[start : start + 500])  # must never raise

    stats = bridge.stats
    rejected = {k: v for k, v in stats.items() if k.startswith("rejected.")}
    assert stats["received"] == TOTAL
    assert stats["accepted"] + sum(rejected.values()) == TOTAL
    for reason in (
        "malformed",
        "oversized",
        "bad_signature",
        "replayed",
        "unknown_gateway",
        "foreign_device",
        "unsupported_version",
    ):
        assert rejected.get(f"rejected.{reason}", 0) > 0, reason
    assert stats["accepted"] > TOTAL * 0.2
    assert DeviceEvent.objects.filter(device__serial_number="FOREIGN-1").count() == 0
    assert DeviceEvent.objects.filter(gateway=gw).exists()
