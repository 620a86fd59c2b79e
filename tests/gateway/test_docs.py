"""docs/gateway-protocol.md stays true: its test vector, examples and code lists."""

import json
import re

import pytest

from gateway.drivers.ble import (
    ACK_CHAR_UUID,
    CONTROL_CHAR_UUID,
    IMAGE_CHAR_UUID,
    SERVICE_UUID,
    build_request,
)
from gateway.protocol import Message, MsgType, OpKind, Reason, ResultCode, encode, open_params
from tests.gateway.portal_double import REPO
from tests.gateway.test_protocol import VECTOR_PAYLOAD, VECTOR_SECRET

DOC = (REPO / "docs" / "gateway-protocol.md").read_text(encoding="utf-8")
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", DOC, re.S)]
ENVELOPES = [e for e in EXAMPLES if "body" in e]


def test_the_worked_example_is_the_tested_vector():
    signed = VECTOR_PAYLOAD[: VECTOR_PAYLOAD.index(b',"sig":')] + b"}"
    assert VECTOR_PAYLOAD.decode() in DOC
    assert signed.decode() in DOC
    assert json.loads(VECTOR_PAYLOAD)["sig"] in DOC
    assert f"{len(signed)} bytes" in DOC


def test_every_message_type_has_a_valid_example():
    assert {e["type"] for e in ENVELOPES} == {t.value for t in MsgType}


@pytest.mark.parametrize("example", ENVELOPES, ids=lambda e: e["type"])
def test_examples_validate(example):
    msg = Message(
        MsgType(example["type"]), example["gw"], example["body"], example["id"], example["ts"]
    )
    encode(msg, "any-secret")


def test_every_code_is_documented():
    for value in [*Reason, *ResultCode, *OpKind]:
        assert f"`{value.value}`" in DOC, value
    for uuid in (SERVICE_UUID, CONTROL_CHAR_UUID, ACK_CHAR_UUID, IMAGE_CHAR_UUID):
        assert uuid in DOC


def test_the_ble_enrollment_example_is_what_the_driver_writes():
    command = next(e for e in ENVELOPES if e["type"] == "command")
    enroll = next(op for op in command["body"]["ops"] if op["kind"] == "enroll")
    opened = {**enroll, "params": open_params(enroll, command["gw"], VECTOR_SECRET)}
    assert opened["params"]["code"] == "7F3K-92QX"  # the label's access key, sealed
    assert build_request(opened, command["gw"]).decode() in DOC
