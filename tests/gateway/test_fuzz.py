"""Random and mutated payloads never make decode raise anything but ProtocolError.

Signed garbage matters most: it passes the signature check and reaches every validator.
"""

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocol import MsgType, ProtocolError, ReplayGuard, decode, sign, topic
from tests.gateway.helpers import (
    IMAGE_SHA,
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

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GUARD = ReplayGuard(max_ids=10_000)
TOPICS = st.sampled_from([topic(UID, t) for t in MsgType] + ["fleetgate/v1/gw/x/cmd", "a/b", ""])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

VALID = [
    command(
        [op(1), sealed(op(2, "load_image", url="https://p/i", sha256=IMAGE_SHA, size=9, token="t"))]
    ),
    command([sealed(op(3, "enroll", device_type="T", code="c", config={"a": 1}))]),
]


def _signed(obj) -> bytes:
    signed = json.dumps(obj, separators=(",", ":")).encode()
    return signed[:-1] + b',"sig":"' + sign(signed, SECRET).encode() + b'"}'


def _decode_only_protocol_errors(topic_name, payload):
    with contextlib.suppress(ProtocolError):
        decode(topic_name, payload, lookup, GUARD)


@FUZZ
@given(topic_name=TOPICS, payload=st.binary(max_size=600))
def test_random_bytes(topic_name, payload):
    _decode_only_protocol_errors(topic_name, payload)


@FUZZ
@given(
    base=st.sampled_from(VALID),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), min_size=1, max_size=4),
)
def test_mutated_bytes(base, cuts):
    t, payload = wire(base)
    data = bytearray(payload)
    for at, insert in cuts:
        at %= len(data) + 1
        data[at : at + len(insert)] = insert
    _decode_only_protocol_errors(t, bytes(data))


@FUZZ
@given(
    msg_type=st.sampled_from(list(MsgType)),
    envelope=st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, "1", None]),
            "id": st.sampled_from(["0" * 32, "z", 5]),
            "ts": st.integers(-5, 2**60) | st.floats(allow_nan=False),
            "gw": st.sampled_from([UID, "other", ""]),
            "type": st.sampled_from([t.value for t in MsgType] + ["x", 1]),
            "extra": json_values,
        },
    ),
    body=json_values,
)
def test_signed_random_envelopes(msg_type, envelope, body):
    _decode_only_protocol_errors(topic(UID, msg_type), _signed({**envelope, "body": body}))


BODIES = {
    MsgType.COMMAND: VALID[0].body,
    MsgType.RESULT: {"results": [result(1, device={"serial": "S", "state": "factory"})]},
    MsgType.EVENT: {"events": [event(t=1.5)]},
    MsgType.PROGRESS: {
        "progress": [{"op": "o", "phase": "download", "bytes": 1, "total": 2, "percent": 50}]
    },
}


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(msg_type=st.sampled_from(list(BODIES)), data=st.data(), replacement=json_values)
def test_signed_valid_bodies_with_one_value_replaced(msg_type, data, replacement):
    body = json.loads(json.dumps(BODIES[msg_type]))
    path = data.draw(st.sampled_from(list(_paths(body))[1:]))
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = replacement
    t, payload = wire(command([op(1)]))
    obj = json.loads(payload)
    obj.pop("sig")
    obj.update(type=msg_type.value, body=body)
    _decode_only_protocol_errors(topic(UID, msg_type), _signed(obj))
