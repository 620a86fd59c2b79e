"""Secret parameters are sealed end to end to their gateway, and the agent forgets them.

The broker and its other clients see only ``params.sealed`` (AES-256-GCM, key derived
from the gateway's secret with HKDF, the gateway uid, operation id and kind as
associated data). The agent opens it in memory when it runs the operation; its SQLite
file never holds the access key, and not even the sealed value once the operation is done.
"""

import base64
import json
import queue
import signal
import uuid

import paho.mqtt.client as mqtt
import pytest

from gateway.drivers.simulated import access_key, serial_number
from gateway.protocol import (
    SEALED,
    ProtocolError,
    Reason,
    decode,
    encode,
    open_params,
    seal_key,
    seal_params,
)
from tests.gateway.helpers import CMD_TOPIC, IMAGE_SHA, SECRET, UID, command, lookup, op, sealed
from tests.gateway.portal_double import REPO, PortalDouble, start_agent
from tests.gateway.test_agent_mqtt import _online, _setup, _stop

DOC = (REPO / "docs" / "gateway-protocol.md").read_text(encoding="utf-8")
ENROLL = op(1, "enroll", device_type="Sensor", name="Hall", code="7F3K-92QX")
IMAGE = op(2, "load_image", url="https://p/i", sha256=IMAGE_SHA, size=9, token="bearer-t0k")


def test_seal_moves_only_the_secret_members_and_opens_again():
    wire = sealed(ENROLL)
    assert wire["params"].keys() == {"device_type", "name", SEALED}
    assert "7F3K-92QX" not in json.dumps(wire)
    assert open_params(wire, UID, SECRET) == ENROLL["params"]
    image = sealed(IMAGE)
    assert "token" not in image["params"] and image["params"]["url"] == "https://p/i"
    assert open_params(image, UID, SECRET) == IMAGE["params"]
    plain = op(3, "provision", config={"a": 1})
    assert seal_params(plain, UID, SECRET) is plain  # nothing secret, nothing sealed
    assert sealed(ENROLL)["params"][SEALED] != wire["params"][SEALED]  # a fresh nonce


@pytest.mark.parametrize(
    "moved",
    [
        lambda w: ({**w, "op": "op-99"}, UID, SECRET),  # to another operation
        lambda w: (w, "gw-other", SECRET),  # to another gateway
        lambda w: ({**w, "kind": "load_image"}, UID, SECRET),  # to another kind
        lambda w: (w, UID, "another-secret-0123"),  # opened with another key
    ],
)
def test_a_sealed_value_opens_only_where_it_was_made_for(moved):
    with pytest.raises(ProtocolError) as caught:
        open_params(*moved(sealed(ENROLL)))
    assert caught.value.reason is Reason.MALFORMED
    assert "does not open" in caught.value.detail


def test_an_altered_sealed_value_does_not_open():
    wire = sealed(ENROLL)
    box = wire["params"][SEALED]
    flipped = box[:20] + ("A" if box[20] != "A" else "B") + box[21:]
    with pytest.raises(ProtocolError):
        open_params({**wire, "params": {**wire["params"], SEALED: flipped}}, UID, SECRET)


def test_secret_parameters_never_travel_in_the_clear():
    with pytest.raises(ProtocolError, match="travels only inside"):
        encode(command([ENROLL]), SECRET)
    with pytest.raises(ProtocolError, match="params.token"):
        encode(command([IMAGE]), SECRET)
    payload = encode(command([sealed(ENROLL), sealed(IMAGE)]), SECRET)
    assert b"7F3K-92QX" not in payload and b"bearer-t0k" not in payload
    decode(CMD_TOPIC, payload, lookup, None)


def test_a_sealed_value_must_hold_only_secret_members():
    smuggled = seal_params(op(1, "enroll", code="K"), UID, SECRET)
    smuggled = {**smuggled, "params": {**smuggled["params"], "code": "K"}}
    with pytest.raises(ProtocolError):  # the same member twice, sealed and plain
        open_params(smuggled, UID, SECRET)


# The test vector of docs/gateway-protocol.md section 7 ("Sealed parameters").
VECTOR = {
    "secret": "example-secret-for-docs-0001",
    "gw": "gw-example-01",
    "op": "5c1f0e9a7b3d4c2e8f6a1b0c9d8e1041-0",
    "nonce": bytes.fromhex("000102030405060708090a0b"),
}


def test_the_documented_test_vector():
    item = {
        "op": VECTOR["op"],
        "kind": "enroll",
        "device": {"serial": "SN-000123", "hardware_id": "02:1A:2B:3C:4D:5E"},
        "params": {"device_type": "Room sensor", "code": "7F3K-92QX"},
    }
    wire = seal_params(item, VECTOR["gw"], VECTOR["secret"], nonce=VECTOR["nonce"])
    key = seal_key(VECTOR["secret"]).hex()
    raw = base64.urlsafe_b64decode(wire["params"][SEALED] + "==")
    assert key in DOC
    assert wire["params"][SEALED] in DOC
    assert raw[:12] == VECTOR["nonce"] and raw[12:].hex() in DOC
    assert open_params(wire, VECTOR["gw"], VECTOR["secret"]) == item["params"]


# -- the agent ---------------------------------------------------------------------------


def _sniff(uid):
    """Any other client of the broker: it sees what crosses it."""
    seen: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sniff-{uuid.uuid4().hex}")
    client.on_connect = lambda c, *a: c.subscribe(f"fleetgate/v1/gw/{uid}/#", qos=1)
    client.on_subscribe = lambda *a: seen.put("subscribed")
    client.on_message = lambda c, u, m: seen.put(bytes(m.payload))
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    assert seen.get(timeout=10) == "subscribed"
    return client, seen


@pytest.mark.services
def test_the_agent_opens_sealed_keys_and_keeps_none_on_disk(tmp_path):
    uid, secret, config = _setup(tmp_path, devices=3)
    key = access_key(serial_number(uid, 1))
    enroll = {
        "op": "op-enroll",
        "kind": "enroll",
        "device": {"serial": serial_number(uid, 1)},
        "params": {"device_type": "Sensor", "code": key},
    }
    wire = seal_params(enroll, uid, secret)
    # The same sealed key moved into another operation (by someone replaying a capture
    # into a forged message would need the secret; the portal never does this): refused.
    moved = {**wire, "op": "op-moved", "device": {"serial": serial_number(uid, 2)}}
    portal = PortalDouble(uid, secret)
    sniffer, seen = _sniff(uid)
    agent = start_agent(config)
    try:
        _online(portal)
        portal.command([wire, moved], seal=False)
        results = portal.results({"op-enroll", "op-moved"})
        assert results["op-enroll"]["ok"], results["op-enroll"]
        assert results["op-moved"]["code"] == "bad_params"
        assert "does not open" in results["op-moved"]["reason"]
        _stop(agent)
        agent = None
    finally:
        if agent is not None and agent.poll() is None:
            _stop(agent, signal.SIGKILL)
        sniffer.disconnect()
        sniffer.loop_stop()
        portal.clear_retained()
        portal.close()

    crossed = []
    while not seen.empty():
        crossed.append(seen.get())
    assert any(b'"sealed"' in payload for payload in crossed)
    assert not any(key.encode() in payload for payload in crossed)

    state = tmp_path / "state"
    on_disk = b"".join(p.read_bytes() for p in state.glob("agent.sqlite3*"))
    assert b"op-enroll" in on_disk  # the operation and its result are remembered
    assert key.encode() not in on_disk
    assert wire["params"][SEALED].encode() not in on_disk
