"""Hand-written validators for message bodies.

Plain functions over plain dicts: the bridge validates thousands of messages per
second on two cores, and a schema library would cost more than the checks themselves.
Every checker raises ``ProtocolError(MALFORMED)``; records prefix the failing path on
the way up, so the detail reads ``ops[3].params.url: expected text``.
"""

import math
import re
from collections.abc import Callable
from typing import Any

from gateway.codes import (
    MAX_BATCH,
    DeviceLinkState,
    EventKind,
    GatewayStatus,
    LinkState,
    MsgType,
    OpKind,
    ProgressPhase,
    ProtocolError,
    Reason,
    ResultCode,
)

Checker = Callable[[Any], None]

UID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
OP_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
HEX32_RE = re.compile(r"[0-9a-f]{32}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
FLAT_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SAFE_INT = 2**53 - 1  # what a JavaScript or Lua receiver can hold exactly
MAX_FLAT_KEYS = 64
MAX_FLAT_TEXT = 256


def fail(detail: str):
    raise ProtocolError(Reason.MALFORMED, detail)


def _prefixed(prefix: str, error: ProtocolError) -> ProtocolError:
    sep = "" if error.detail[:1] in (":", "[", ".") else "."
    return ProtocolError(error.reason, f"{prefix}{sep}{error.detail}")


# -- leaves -------------------------------------------------------------------------


def text(max_len: int) -> Checker:
    def check(v):
        if type(v) is not str or not 0 < len(v) <= max_len or not v.isprintable():
            fail(f": expected printable text of 1..{max_len} characters")

    return check


def optional_text(max_len: int) -> Checker:
    inner = text(max_len)

    def check(v):
        if v is not None:
            inner(v)

    return check


def integer(lo: int, hi: int) -> Checker:
    def check(v):
        if type(v) is not int or not lo <= v <= hi:
            fail(f": expected an integer in {lo}..{hi}")

    return check


def pattern(regex: re.Pattern, what: str) -> Checker:
    def check(v):
        if type(v) is not str or regex.fullmatch(v) is None:
            fail(f": expected {what}")

    return check


def choice(enum) -> Checker:
    values = frozenset(e.value for e in enum)

    def check(v):
        if type(v) is not str or v not in values:
            fail(f": expected one of {sorted(values)}")

    return check


def boolean(v):
    if type(v) is not bool:
        fail(": expected true or false")


def url(v):
    text(2048)(v)
    if not v.startswith(("http://", "https://")):
        fail(": expected an http:// or https:// URL")


def flat_object(v):
    """A small object of scalars: configuration and event data, never nested."""
    if type(v) is not dict:
        fail(": expected an object")
    if len(v) > MAX_FLAT_KEYS:
        fail(f": more than {MAX_FLAT_KEYS} keys")
    for key, value in v.items():
        if FLAT_KEY_RE.fullmatch(key) is None:
            fail(f": bad key {key[:70]!r}")
        t = type(value)
        if value is None or t is bool:
            continue
        if t is int:
            if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                continue
        elif t is float:
            if math.isfinite(value):
                continue
        elif t is str and len(value) <= MAX_FLAT_TEXT and value.isprintable():
            continue
        fail(f".{key}: expected null, true/false, a safe number or short printable text")


# -- composites ---------------------------------------------------------------------


def record(spec: dict[str, Checker], required: tuple[str, ...] = ()) -> Checker:
    """An object with exactly the fields of ``spec``; unknown fields are refused."""
    needed = frozenset(required)

    def check(v):
        if type(v) is not dict:
            fail(": expected an object")
        if not needed <= v.keys():
            fail(f": missing {sorted(needed - v.keys())}")
        for key, value in v.items():
            checker = spec.get(key)
            if checker is None:
                fail(f": unknown field {str(key)[:70]!r}")
            try:
                checker(value)
            except ProtocolError as e:
                raise _prefixed(key, e) from None

    return check


def list_of(item: Checker, max_len: int = MAX_BATCH, min_len: int = 1) -> Checker:
    def check(v):
        if type(v) is not list or not min_len <= len(v) <= max_len:
            fail(f": expected a list of {min_len}..{max_len} items")
        for i, value in enumerate(v):
            try:
                item(value)
            except ProtocolError as e:
                raise _prefixed(f"[{i}]", e) from None

    return check


def unique_op_ids(items: list[dict], what: str):
    if len({i["op"] for i in items}) != len(items):
        fail(f"{what}: an operation id appears twice")


# -- the shapes of the link ---------------------------------------------------------

op_id = pattern(OP_ID_RE, "an operation id ([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})")
session = pattern(HEX32_RE, "32 lowercase hex digits")
timestamp_ms = integer(1, MAX_SAFE_INT)

device_ref = record(
    {"serial": text(64), "hardware_id": optional_text(64)},
    required=("serial",),
)
device_info = record(
    {
        "serial": text(64),
        "hardware_id": optional_text(64),
        "state": choice(DeviceLinkState),
        "firmware": text(64),
        "device_type": text(80),
        "rssi": integer(-127, 20),
    },
    required=("serial",),
)

_config_params = {"config": flat_object, "name": text(120)}
# The parameters as the gateway acts on them, after the sealed ones are opened.
OPEN_PARAMS: dict[str, dict[str, Checker]] = {
    OpKind.ENROLL: {
        "device_type": text(80),
        "name": text(120),
        "location": text(255),
        "code": text(128),
        "organization": text(64),
        "config": flat_object,
    },
    OpKind.PROVISION: _config_params,
    OpKind.REPROVISION: _config_params,
    OpKind.DEPROVISION: {},
    OpKind.UNENROLL: {},
    OpKind.WINK: {"seconds": integer(1, 600)},
    OpKind.LOAD_IMAGE: {
        "url": url,
        "sha256": pattern(SHA256_RE, "64 lowercase hex digits"),
        "size": integer(1, 2**40),
        "token": text(512),
        "version": text(64),
        "name": text(255),
    },
}
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    OpKind.LOAD_IMAGE: ("url", "sha256", "size", "token"),
}
# Parameters that never cross the broker in the clear: they travel inside ``sealed``
# (AES-GCM under a key derived from the gateway's secret; gateway.protocol.seal_params).
SECRET_PARAMS: dict[str, frozenset[str]] = {
    OpKind.ENROLL: frozenset({"code"}),  # the device label's access key
    OpKind.LOAD_IMAGE: frozenset({"token"}),  # the image download's bearer token
}
SEALED = "sealed"
SEALED_RE = re.compile(r"[A-Za-z0-9_-]{40,4096}")  # base64url, no padding
sealed_text = pattern(SEALED_RE, "base64url of nonce, ciphertext and tag (40..4096 characters)")


def _wire_params(kind: str) -> Checker:
    """What a command may carry: the secret members only inside ``sealed``."""
    secret = SECRET_PARAMS.get(kind, frozenset())
    spec = {k: c for k, c in OPEN_PARAMS[kind].items() if k not in secret}
    if secret:
        spec[SEALED] = sealed_text
    required = tuple(k for k in REQUIRED_PARAMS.get(kind, ()) if k not in secret)
    if secret & set(REQUIRED_PARAMS.get(kind, ())):
        required += (SEALED,)
    check = record(spec, required=required)

    def checker(v):
        if type(v) is dict and secret & v.keys():
            name = sorted(secret & v.keys())[0]
            fail(f'.{name}: a secret parameter travels only inside "sealed"')
        check(v)

    return checker


PARAMS: dict[str, Checker] = {kind: _wire_params(kind) for kind in OPEN_PARAMS}
OPENED: dict[str, Checker] = {
    kind: record(spec, required=REQUIRED_PARAMS.get(kind, ())) for kind, spec in OPEN_PARAMS.items()
}

_op_shape = record(
    {"op": op_id, "kind": choice(OpKind), "device": device_ref, "params": lambda v: None},
    required=("op", "kind", "device"),
)


def operation(v):
    _op_shape(v)
    try:
        PARAMS[v["kind"]](v.get("params", {}))
    except ProtocolError as e:
        raise _prefixed("params", e) from None


def opened_params(kind: str, params: Any) -> None:
    """Check the parameters once the sealed ones are opened (what the driver gets)."""
    try:
        OPENED[kind](params)
    except ProtocolError as e:
        raise _prefixed("params", e) from None


_result_shape = record(
    {
        "op": op_id,
        "ok": boolean,
        "code": choice(ResultCode),
        "reason": text(500),
        "device": device_info,
        "at": timestamp_ms,
    },
    required=("op", "ok", "code"),
)


def result_item(v):
    _result_shape(v)
    if v["ok"] != (v["code"] == ResultCode.OK):
        fail(': "ok" is true exactly when "code" is "ok"')


_progress_shape = record(
    {
        "op": op_id,
        "phase": choice(ProgressPhase),
        "bytes": integer(0, 2**40),
        "total": integer(1, 2**40),
        "percent": integer(0, 100),
    },
    required=("op", "phase", "bytes", "total", "percent"),
)


def progress_item(v):
    _progress_shape(v)
    if v["bytes"] > v["total"]:
        fail(': "bytes" exceeds "total"')


event_item = record(
    {"device": device_ref, "kind": choice(EventKind), "ts": timestamp_ms, "data": flat_object},
    required=("device", "kind", "ts"),
)

_command = record({"ops": list_of(operation)}, required=("ops",))
_result = record({"results": list_of(result_item)}, required=("results",))


def _kinds(v):
    list_of(choice(OpKind), max_len=len(OpKind))(v)
    if len(set(v)) != len(v):
        fail(": a kind appears twice")


BODIES: dict[MsgType, Checker] = {
    MsgType.HELLO: record(
        {
            "agent": text(64),
            "driver": text(32),
            "session": session,
            "devices": integer(0, 1_000_000),
            "kinds": _kinds,
            "link": choice(LinkState),
            "detail": text(500),
        },
        required=("agent", "driver", "session", "devices", "kinds", "link"),
    ),
    MsgType.STATUS: record(
        {"state": choice(GatewayStatus), "session": session, "will": boolean},
        required=("state", "session", "will"),
    ),
    MsgType.DISCOVERY: record({"devices": list_of(device_info)}, required=("devices",)),
    MsgType.EVENT: record({"events": list_of(event_item)}, required=("events",)),
    MsgType.COMMAND: lambda v: (_command(v), unique_op_ids(v["ops"], "ops")),
    MsgType.RESULT: lambda v: (_result(v), unique_op_ids(v["results"], "results")),
    MsgType.PROGRESS: record({"progress": list_of(progress_item)}, required=("progress",)),
}


def validate_body(msg_type: MsgType, body: Any) -> None:
    try:
        BODIES[msg_type](body)
    except ProtocolError as e:
        raise _prefixed("body", e) from None
