"""The wire protocol: round trips, the signing test vector, and every rejection reason."""

import hashlib
import hmac
import json

import pytest

from gateway.protocol import (
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    Channel,
    Message,
    MsgType,
    ProtocolError,
    Reason,
    ReplayGuard,
    batches,
    decode,
    device_refs,
    drop_foreign,
    encode,
    encode_batches,
    now_ms,
    parse_topic,
    shared_subscription,
    sign,
    topic,
)
from tests.gateway.helpers import (
    CMD_TOPIC,
    EVT_TOPIC,
    IMAGE_SHA,
    RES_TOPIC,
    SECRET,
    UID,
    command,
    event,
    lookup,
    op,
    result,
    sealed,
    wire,
)

# The worked example of docs/gateway-protocol.md, "Signing".
VECTOR_SECRET = "example-secret-for-docs-0001"
VECTOR_PAYLOAD = (
    b'{"v":1,"id":"0123456789abcdef0123456789abcdef","ts":1767225600000,"gw":"gw-example-01",'
    b'"type":"command","body":{"ops":[{"op":"5c1f0e9a7b3d4c2e8f6a1b0c9d8e1042-0","kind":"wink",'
    b'"device":{"serial":"SN-000123","hardware_id":"02:1A:2B:3C:4D:5E"},"params":{"seconds":10}}]},'
    b'"sig":"ac52ce8c27f4a429a3b2680391adb5ad4ba39293ef1f5019fa62d968d3ffc0e3"}'
)


def _decode(topic_name, payload, *, guard=None, now=None):
    return decode(topic_name, payload, lookup, guard, now)


def _reason(topic_name, payload, **kw) -> Reason:
    with pytest.raises(ProtocolError) as caught:
        _decode(topic_name, payload, **kw)
    return caught.value.reason


def _resign(obj: dict, secret=SECRET) -> bytes:
    """Sign an arbitrary envelope object exactly as a (possibly buggy) sender would."""
    signed = json.dumps(obj, separators=(",", ":")).encode()
    return signed[:-1] + b',"sig":"' + sign(signed, secret).encode() + b'"}'


def _envelope(**overrides) -> dict:
    msg = command([op(1)])
    obj = {"v": 1, "id": msg.id, "ts": msg.ts, "gw": UID, "type": "command", "body": msg.body}
    obj.update(overrides)
    return obj


# -- round trips and the test vector ---------------------------------------------------


def test_signing_test_vector():
    msg = Message(
        MsgType.COMMAND,
        "gw-example-01",
        {
            "ops": [
                {
                    "op": "5c1f0e9a7b3d4c2e8f6a1b0c9d8e1042-0",
                    "kind": "wink",
                    "device": {"serial": "SN-000123", "hardware_id": "02:1A:2B:3C:4D:5E"},
                    "params": {"seconds": 10},
                }
            ]
        },
        id="0123456789abcdef0123456789abcdef",
        ts=1767225600000,
    )
    assert encode(msg, VECTOR_SECRET) == VECTOR_PAYLOAD
    signed = VECTOR_PAYLOAD[: VECTOR_PAYLOAD.index(b',"sig":')] + b"}"
    expected = hmac.new(VECTOR_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert json.loads(VECTOR_PAYLOAD)["sig"] == expected
    got = decode(
        "fleetgate/v1/gw/gw-example-01/cmd",
        VECTOR_PAYLOAD,
        {"gw-example-01": VECTOR_SECRET}.get,
        None,
    )
    assert got == msg


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (MsgType.COMMAND, {"ops": [op(1), op(2, "wink", seconds=3), op(3, "deprovision")]}),
        (
            MsgType.COMMAND,
            {
                "ops": [
                    sealed(
                        op(
                            4,
                            "enroll",
                            device_type="Sensor",
                            code="QR-1234",
                            name="Hall",
                            config={"interval": 30},
                        )
                    ),
                    sealed(
                        op(
                            5,
                            "load_image",
                            url="https://portal/img/5",
                            sha256=IMAGE_SHA,
                            size=1024,
                            token="t0k",
                        )
                    ),
                ]
            },
        ),
        (
            MsgType.RESULT,
            {"results": [result(1), result(2, ok=False, code="timeout", reason="late")]},
        ),
        (
            MsgType.PROGRESS,
            {
                "progress": [
                    {"op": "op-1", "phase": "transfer", "bytes": 5, "total": 10, "percent": 50}
                ]
            },
        ),
        (MsgType.EVENT, {"events": [event(temp_c=21.5, seq=1, door=None, label="x")]}),
        (
            MsgType.DISCOVERY,
            {
                "devices": [
                    {
                        "serial": "S1",
                        "hardware_id": "02:00:00:00:00:01",
                        "state": "factory",
                        "rssi": -60,
                    }
                ]
            },
        ),
        (
            MsgType.HELLO,
            {
                "agent": "x/1",
                "driver": "simulated",
                "session": "a" * 32,
                "devices": 3,
                "kinds": ["wink"],
                "link": "ok",
            },
        ),
        (MsgType.STATUS, {"state": "online", "session": "b" * 32, "will": False}),
    ],
)
def test_round_trip(msg_type, body):
    msg = Message(msg_type, UID, body)
    got = _decode(*wire(msg), guard=ReplayGuard())
    assert got == msg
    assert isinstance(got.type, MsgType)


def test_topics():
    assert topic(UID, Channel.CMD) == f"fleetgate/v1/gw/{UID}/cmd"
    assert topic(UID, MsgType.PROGRESS) == f"fleetgate/v1/gw/{UID}/res"
    assert parse_topic(EVT_TOPIC) == (UID, Channel.EVT)
    assert shared_subscription("b") == "$share/b/fleetgate/v1/gw/+/+"


# -- every rejection reason --------------------------------------------------------------


def test_oversized_is_refused_before_anything_else():
    assert _reason("nonsense", b"x" * (MAX_PAYLOAD_BYTES + 1)) is Reason.OVERSIZED


def test_encode_refuses_oversized():
    ops = [
        sealed(op(i, "enroll", name="n" * 120, location="l" * 255, code="c" * 128))
        for i in range(MAX_BATCH)
    ]
    with pytest.raises(ProtocolError) as caught:
        encode(command(ops), SECRET)
    assert caught.value.reason is Reason.OVERSIZED


@pytest.mark.parametrize(
    "name",
    [
        "fleetgate/v1/gw/x",
        "fleetgate/v1/gw/a b/cmd",
        "fleetgate/v1/gw/x/other",
        "other/v1/gw/x/cmd",
    ],
)
def test_bad_topic_is_malformed(name):
    assert _reason(name, wire(command([op(1)]))[1]) is Reason.MALFORMED


def test_unknown_gateway():
    msg = command([op(1)], uid="gw-nobody")
    assert _reason(*wire(msg)) is Reason.UNKNOWN_GATEWAY


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p[: p.index(b',"sig":')] + b"}",  # unsigned
        lambda p: p[:-3] + (b"0" if p[-3:-2] != b"0" else b"1") + p[-2:],  # forged
        lambda p: p.replace(b'"op-1"', b'"op-2"'),  # tampered body
        lambda p: p[:-66] + p[-66:-2].upper() + p[-2:],  # signature not lowercase
        lambda p: p + b" ",  # trailing bytes after the signature
    ],
)
def test_bad_signature(mutate):
    t, payload = wire(command([op(1)]))
    assert _reason(t, mutate(payload)) is Reason.BAD_SIGNATURE


def test_wrong_secret_is_bad_signature():
    t, payload = wire(command([op(1)]), secret="another-secret-123456")
    assert _reason(t, payload) is Reason.BAD_SIGNATURE


def test_replayed_id_and_stale_timestamp():
    guard = ReplayGuard(window_s=60)
    msg = command([op(1)])
    t, payload = wire(msg)
    _decode(t, payload, guard=guard)
    assert _reason(t, payload, guard=guard) is Reason.REPLAYED
    old = wire(command([op(2)], ts=msg.ts - 61_000))
    assert _reason(*old, guard=guard) is Reason.REPLAYED
    future = wire(command([op(3)], ts=msg.ts + 61_000))
    assert _reason(*future, guard=guard) is Reason.REPLAYED


def test_status_is_exempt_from_the_window_but_not_from_ids():
    """A last will is signed at connect time and may be published hours later."""
    guard = ReplayGuard(window_s=60)
    will = Message(
        MsgType.STATUS, UID, {"state": "offline", "session": "c" * 32, "will": True}, ts=1_000
    )
    _decode(*wire(will), guard=guard)
    assert _reason(*wire(will), guard=guard) is Reason.REPLAYED


def test_unsupported_version():
    assert _reason(CMD_TOPIC, _resign(_envelope(v=2))) is Reason.UNSUPPORTED_VERSION
    assert _reason("fleetgate/v2/gw/x/cmd", b"{}") is Reason.UNSUPPORTED_VERSION


def test_foreign_items_are_dropped_and_the_rest_kept():
    msg = Message(
        MsgType.RESULT,
        UID,
        {"results": [result(1, device={"serial": "MINE"}), result(2, device={"serial": "THEIRS"})]},
    )
    assert [r["serial"] for r in device_refs(msg)] == ["MINE", "THEIRS"]
    assert drop_foreign(msg, lambda item: True) == (msg, [])
    kept, dropped = drop_foreign(msg, lambda item: item["device"]["serial"] == "MINE")
    assert [r["op"] for r in kept.items] == ["op-1"] and (kept.id, kept.ts) == (msg.id, msg.ts)
    assert [r["op"] for r in dropped] == ["op-2"]
    assert drop_foreign(msg, lambda item: False)[0] is None
    hello = Message(MsgType.STATUS, UID, {"state": "online", "session": "a" * 32, "will": False})
    assert drop_foreign(hello, lambda item: False) == (hello, [])


@pytest.mark.parametrize(
    "obj",
    [
        _envelope(v="1"),
        _envelope(id="not-hex"),
        _envelope(id="A" * 32),
        _envelope(ts=1.5),
        _envelope(ts=True),
        _envelope(ts=-1),
        _envelope(gw="gw-other"),  # signed for UID, names someone else
        _envelope(type="result"),  # a result on the command topic
        _envelope(type="nope"),
        _envelope(extra=1),
        {k: v for k, v in _envelope().items() if k != "body"},
        _envelope(body={"ops": []}),
        _envelope(body={"ops": [op(1), op(1)]}),  # duplicate operation id
        _envelope(body={"ops": [op(i) for i in range(MAX_BATCH + 1)]}),
        _envelope(body={"ops": [{**op(1), "kind": "explode"}]}),
        _envelope(body={"ops": [{**op(1), "op": "-starts-with-dash"}]}),
        _envelope(body={"ops": [{**op(1), "surprise": True}]}),
        _envelope(body={"ops": [{**op(1), "params": None}]}),  # section 6: leave it out
        _envelope(body={"ops": [op(1, "wink", seconds=0)]}),
        _envelope(body={"ops": [op(1, "wink", seconds=True)]}),
        _envelope(body={"ops": [op(1, "deprovision", config={})]}),
        _envelope(
            body={
                "ops": [
                    sealed(op(1, "load_image", url="ftp://x", sha256=IMAGE_SHA, size=1, token="t"))
                ]
            }
        ),
        _envelope(
            body={
                "ops": [
                    sealed(
                        op(1, "load_image", url="https://x", sha256="AB" * 32, size=1, token="t")
                    )
                ]
            }
        ),
        _envelope(
            body={
                "ops": [sealed(op(1, "load_image", url="https://x", sha256=IMAGE_SHA, token="t"))]
            }
        ),
        _envelope(body={"ops": [op(1, "provision", config={"nested": {"a": 1}})]}),
        _envelope(body={"ops": [op(1, "provision", config={"big": 2**60})]}),
        _envelope(body={"ops": [{**op(1), "device": {"serial": "line\nbreak"}}]}),
        _envelope(body={"ops": [{**op(1), "device": {"serial": "x" * 65}}]}),
        _envelope(body={"ops": [{**op(1), "device": {}}]}),
        _envelope(body=[]),
    ],
)
def test_malformed(obj):
    if type(obj.get("ts")) is int and obj["ts"] > 0:
        # Built at collection time, which may be longer ago than the replay window.
        obj = {**obj, "ts": now_ms()}
    assert _reason(CMD_TOPIC, _resign(obj), guard=ReplayGuard()) is Reason.MALFORMED


@pytest.mark.parametrize(
    "signed",
    [
        b"{}",
        b'{"v":1} 5}',
        b'{"v":1,"ts":NaN}',
        b'{"v":1e999}',
        b"\xff\xfe{}",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_signed_garbage_is_malformed(signed):
    payload = signed[:-1] + b',"sig":"' + sign(signed, SECRET).encode() + b'"}'
    assert _reason(CMD_TOPIC, payload) is Reason.MALFORMED


def test_result_ok_must_agree_with_code():
    body = {"results": [result(1, ok=True, code="failed")]}
    obj = _envelope(type="result", body=body)
    assert _reason(RES_TOPIC, _resign(obj)) is Reason.MALFORMED


def test_malformed_detail_names_the_path():
    obj = _envelope(
        body={
            "ops": [op(1), sealed(op(2, "load_image", url=5, sha256=IMAGE_SHA, size=1, token="t"))]
        }
    )
    with pytest.raises(ProtocolError) as caught:
        _decode(CMD_TOPIC, _resign(obj))
    assert caught.value.detail.startswith("body.ops[1].params.url")


# -- batching ----------------------------------------------------------------------------


def test_batches_respect_the_limit():
    sizes = [len(b) for b in batches(range(1234))]
    assert sizes == [500, 500, 234]


def test_encode_batches_splits_by_count_and_size():
    ops = [
        sealed(op(i, "enroll", name="n" * 120, location="l" * 255, code="c" * 128))
        for i in range(1200)
    ]
    parts = list(encode_batches(MsgType.COMMAND, UID, ops, SECRET))
    assert sum(len(items) for items, _ in parts) == 1200
    assert all(len(items) <= MAX_BATCH and len(p) <= MAX_PAYLOAD_BYTES for items, p in parts)
    assert len(parts) > 3  # 500 such operations do not fit in one message
    decoded = [decode(CMD_TOPIC, p, lookup, None) for _, p in parts]
    assert [o["op"] for m in decoded for o in m.items] == [o["op"] for o in ops]


def test_encode_validates_what_it_sends():
    with pytest.raises(ProtocolError) as caught:
        encode(command([{**op(1), "kind": "explode"}]), SECRET)
    assert caught.value.reason is Reason.MALFORMED


# -- duplicate member names ----------------------------------------------------------------


def _signed_text(text: str) -> bytes:
    signed = text.encode()
    return signed[:-1] + b',"sig":"' + sign(signed, SECRET).encode() + b'"}'


@pytest.mark.parametrize(
    ("where", "fragment", "twice"),
    [
        ("envelope", '"type":"event",', '"type":"event","type":"event",'),
        ("body", '"body":{"events":', '"body":{"events":[],"events":'),
        ("item", '"kind":"telemetry"', '"kind":"alarm","kind":"telemetry"'),
        ("device", '"serial":"SIM-1"', '"serial":"SIM-2","serial":"SIM-1"'),
        ("data", '"seq":1', '"seq":1,"seq":2'),
    ],
)
def test_a_member_name_given_twice_is_malformed_at_every_level(where, fragment, twice):
    """Section 3: no duplicate member names. Python's json keeps the last one silently."""
    msg = Message(MsgType.EVENT, UID, {"events": [event(ts=now_ms(), seq=1)]})
    text = encode(msg, SECRET).decode()
    text = text[: text.index(',"sig":')] + "}"
    assert fragment in text, where
    payload = _signed_text(text.replace(fragment, twice, 1))
    with pytest.raises(ProtocolError) as caught:
        _decode(EVT_TOPIC, payload, guard=ReplayGuard())
    assert caught.value.reason is Reason.MALFORMED
    assert "duplicate member name" in caught.value.detail
