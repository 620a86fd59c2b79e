"""The gateway link's wire protocol: topics, the signed envelope, validation, batching.

One definition for both ends: the portal's bridge and the gateway agent import this
module, and docs/gateway-protocol.md describes the same rules for third parties.

The signature covers the exact bytes that are parsed. A sender serialises the envelope
without its signature (any JSON serialiser, UTF-8), signs those bytes, and attaches the
signature by replacing the final ``}`` with ``,"sig":"<hex>"}``. A receiver cuts that
fixed-length suffix off again, so it never re-serialises (no canonical-JSON rules to
disagree about) and refuses a forgery before parsing it.
"""

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.codes import (
    BATCH_KEY,
    CHANNEL_OF,
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    REPLAY_WINDOW_S,
    SIG_HEX_LEN,
    TOPIC_ROOT,
    Channel,
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
from gateway.replay import ReplayGuard
from gateway.schema import (
    HEX32_RE,
    MAX_SAFE_INT,
    SEALED,
    SECRET_PARAMS,
    UID_RE,
    opened_params,
    validate_body,
)

__all__ = [
    "BATCH_KEY",
    "CHANNEL_OF",
    "MAX_BATCH",
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "REPLAY_WINDOW_S",
    "SUBSCRIBE_ALL",
    "TOPIC_ROOT",
    "Channel",
    "DeviceLinkState",
    "EventKind",
    "GatewayStatus",
    "LinkState",
    "Message",
    "MsgType",
    "OpKind",
    "ProgressPhase",
    "ProtocolError",
    "Reason",
    "ReplayGuard",
    "ResultCode",
    "SEALED",
    "SECRET_PARAMS",
    "SecretLookup",
    "batches",
    "decode",
    "device_refs",
    "drop_foreign",
    "encode",
    "encode_batches",
    "item_devices",
    "new_id",
    "now_ms",
    "open_params",
    "parse_topic",
    "seal_params",
    "shared_subscription",
    "sign",
    "topic",
]

SUBSCRIBE_ALL = f"{TOPIC_ROOT}/+/+"  # what a bridge subscribes to
ENVELOPE_KEYS = frozenset({"v", "id", "ts", "gw", "type", "body"})
SIG_PREFIX = b',"sig":"'
SIG_SUFFIX_LEN = len(SIG_PREFIX) + SIG_HEX_LEN + 2  # ,"sig":"<64 hex>"}
_SIG_HEX_RE = re.compile(rb"[0-9a-f]{64}")
_TYPES = {t.value: t for t in MsgType}
_CHANNELS = {c.value: c for c in Channel}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


class DuplicateMember(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict:
    """Every JSON object, at every level: a name given twice is malformed (section 3).

    Python's default keeps the last value silently, so two receivers that keep the first
    and the last would act on different messages with one signature.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        name = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateMember(f"duplicate member name {name[:70]!r}")
    return obj


_JSON = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_object)
_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode

SecretLookup = Callable[[str], bytes | str | None]


def new_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Message:
    """One envelope. ``ts`` is integer milliseconds since the Unix epoch (UTC)."""

    type: MsgType
    gw: str
    body: dict[str, Any]
    id: str = field(default_factory=new_id)
    ts: int = field(default_factory=now_ms)
    v: int = PROTOCOL_VERSION

    @property
    def items(self) -> list[dict]:
        """The batch a batched message carries (ops, results, events, ...)."""
        return self.body[BATCH_KEY[self.type]]


# -- topics -------------------------------------------------------------------------


def topic(gateway_uid: str, channel: Channel | MsgType | str) -> str:
    """``channel``: a Channel (or its name), or a message type (its channel)."""
    channel = CHANNEL_OF[channel] if isinstance(channel, MsgType) else Channel(channel)
    return f"{TOPIC_ROOT}/{gateway_uid}/{channel.value}"


def shared_subscription(group: str = "fleetgate-bridge") -> str:
    """MQTT 5 / Mosquitto shared subscription: several bridges split the gateways' load."""
    return f"$share/{group}/{SUBSCRIBE_ALL}"


def parse_topic(name: str) -> tuple[str, Channel]:
    parts = name.split("/")
    if len(parts) != 5 or parts[0] != "fleetgate" or parts[2] != "gw":
        raise ProtocolError(Reason.MALFORMED, f"not a gateway topic: {name[:120]!r}")
    if parts[1] != f"v{PROTOCOL_VERSION}":
        raise ProtocolError(Reason.UNSUPPORTED_VERSION, f"topic version {parts[1][:20]!r}")
    uid, channel = parts[3], _CHANNELS.get(parts[4])
    if channel is None or UID_RE.fullmatch(uid) is None:
        raise ProtocolError(Reason.MALFORMED, f"not a gateway topic: {name[:120]!r}")
    return uid, channel


# -- signing ------------------------------------------------------------------------


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(signed_bytes: bytes, secret: bytes | str) -> str:
    """Lowercase hex HMAC-SHA256 of the envelope bytes, keyed with the UTF-8 secret."""
    return hmac.new(_key(secret), signed_bytes, hashlib.sha256).hexdigest()


def encode(msg: Message, secret: bytes | str, *, validate: bool = True) -> bytes:
    """The signed wire bytes of ``msg``; ``validate`` checks it as a receiver would."""
    if validate:
        _check_envelope(msg.v, msg.id, msg.ts, msg.gw, msg.type)
        validate_body(MsgType(msg.type), msg.body)
    signed = _dumps(
        {"v": msg.v, "id": msg.id, "ts": msg.ts, "gw": msg.gw, "type": msg.type, "body": msg.body}
    ).encode()
    payload = b'%s%s%s"}' % (signed[:-1], SIG_PREFIX, sign(signed, secret).encode())
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(Reason.OVERSIZED, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    return payload


def _check_envelope(v, msg_id, ts, gw, msg_type) -> None:
    if type(v) is not int:
        raise ProtocolError(Reason.MALFORMED, "v: expected an integer")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(Reason.UNSUPPORTED_VERSION, f"version {v}")
    if type(msg_id) is not str or HEX32_RE.fullmatch(msg_id) is None:
        raise ProtocolError(Reason.MALFORMED, "id: expected 32 lowercase hex digits")
    if type(ts) is not int or not 0 < ts <= MAX_SAFE_INT:
        raise ProtocolError(Reason.MALFORMED, "ts: expected integer milliseconds")
    if type(gw) is not str or UID_RE.fullmatch(gw) is None:
        raise ProtocolError(Reason.MALFORMED, "gw: expected a gateway uid")
    if not isinstance(msg_type, str) or msg_type not in _TYPES:
        raise ProtocolError(Reason.MALFORMED, "type: unknown message type")


def decode(
    topic_name: str,
    payload: bytes,
    secret_lookup: SecretLookup,
    replay_guard: ReplayGuard | None,
    now: float | None = None,
) -> Message:
    """Authenticate and validate one received message, or raise ``ProtocolError``.

    Order matters for cost and for counting: size, topic, gateway, signature (before
    any parsing), envelope, replay (``now`` is seconds since the epoch, default the
    clock; no guard skips this step), then the body. ``secret_lookup`` maps a gateway
    uid to its secret, or None for an unknown gateway.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(Reason.OVERSIZED, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    uid, channel = parse_topic(topic_name)
    secret = secret_lookup(uid)
    if not secret:
        raise ProtocolError(Reason.UNKNOWN_GATEWAY, uid)
    payload = bytes(payload)
    sig = payload[-SIG_HEX_LEN - 2 : -2]
    if (
        len(payload) <= SIG_SUFFIX_LEN
        or payload[-SIG_SUFFIX_LEN : -SIG_HEX_LEN - 2] != SIG_PREFIX
        or payload[-2:] != b'"}'
        or _SIG_HEX_RE.fullmatch(sig) is None
    ):
        raise ProtocolError(Reason.BAD_SIGNATURE, "unsigned")
    signed = payload[:-SIG_SUFFIX_LEN] + b"}"
    if not hmac.compare_digest(sign(signed, secret).encode(), sig):
        raise ProtocolError(Reason.BAD_SIGNATURE, "signature does not match")
    try:
        obj = _JSON.decode(signed.decode("utf-8"))
    except DuplicateMember as e:
        raise ProtocolError(Reason.MALFORMED, str(e)) from None
    except (ValueError, RecursionError) as e:
        raise ProtocolError(Reason.MALFORMED, f"not JSON: {str(e)[:80]}") from None
    if type(obj) is not dict:
        raise ProtocolError(Reason.MALFORMED, "expected a JSON object")
    _check_envelope(obj.get("v"), obj.get("id"), obj.get("ts"), obj.get("gw"), obj.get("type"))
    if obj.keys() != ENVELOPE_KEYS:
        raise ProtocolError(Reason.MALFORMED, f"envelope fields must be {sorted(ENVELOPE_KEYS)}")
    msg_type = _TYPES[obj["type"]]
    if obj["gw"] != uid:
        raise ProtocolError(Reason.MALFORMED, "gw does not match the topic")
    if CHANNEL_OF[msg_type] is not channel:
        raise ProtocolError(Reason.MALFORMED, f"{msg_type.value} is not sent on {channel.value}")
    if replay_guard is not None:
        now_ms_ = now_ms() if now is None else int(now * 1000)
        replay_guard.check(obj["id"], obj["ts"], now_ms_, windowed=msg_type is not MsgType.STATUS)
    validate_body(msg_type, obj["body"])
    return Message(msg_type, uid, obj["body"], obj["id"], obj["ts"], obj["v"])


# -- sealed parameters ----------------------------------------------------------------
#
# Access keys and download tokens are encrypted end to end to their gateway: the broker
# and its other clients see only ``"sealed"``. Key: HKDF-SHA256 of the gateway's secret
# (salt SEAL_SALT, info SEAL_INFO), 32 bytes, for AES-256-GCM. Associated data: the
# gateway uid, the operation id and its kind, so a sealed value opens only in the
# operation it was made for. ``sealed`` is base64url (no padding) of a fresh 12-byte
# nonce, then the ciphertext with its 16-byte tag; the plaintext is the compact JSON
# object of the secret members. docs/gateway-protocol.md section 7 has a test vector.

SEAL_SALT = b"fleetgate/v1"
SEAL_INFO = b"sealed params"
SEAL_NONCE_BYTES = 12


def seal_key(secret: bytes | str) -> bytes:
    """The AES-256 key for a gateway's sealed parameters, derived from its secret."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=SEAL_SALT, info=SEAL_INFO)
    return hkdf.derive(_key(secret))


@functools.lru_cache(maxsize=4096)
def _sealer(secret: bytes) -> AESGCM:
    """One derivation per secret: a worker seals for many gateways, each many times."""
    return AESGCM(seal_key(secret))


def seal_aad(gateway_uid: str, op_id: str, kind: str) -> bytes:
    return f"fleetgate/v1/sealed\n{gateway_uid}\n{op_id}\n{kind}".encode()


def seal_params(op: dict, gateway_uid: str, secret: bytes | str, *, nonce: bytes | None = None):
    """``op`` with its secret parameters moved into ``params.sealed`` (others stay readable).

    Returns ``op`` itself when it has nothing secret. ``nonce`` is for test vectors only.
    """
    names = SECRET_PARAMS.get(op["kind"])
    params = op.get("params")
    if not names or not params or not names & params.keys():
        return op
    hidden = {k: params[k] for k in sorted(names & params.keys())}
    nonce = nonce or os.urandom(SEAL_NONCE_BYTES)
    box = _sealer(_key(secret)).encrypt(
        nonce, _dumps(hidden).encode(), seal_aad(gateway_uid, op["op"], op["kind"])
    )
    rest = {k: v for k, v in params.items() if k not in names}
    rest[SEALED] = base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()
    return {**op, "params": rest}


def open_params(op: dict, gateway_uid: str, secret: bytes | str) -> dict:
    """The operation's parameters with ``sealed`` opened and checked, or ProtocolError.

    A value that does not open (another gateway's key, moved from another operation,
    altered) is MALFORMED; the agent answers that operation ``bad_params``.
    """
    params = dict(op.get("params") or {})
    sealed = params.pop(SEALED, None)
    if sealed is not None:
        aad = seal_aad(gateway_uid, op["op"], op["kind"])
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
            nonce, box = raw[:SEAL_NONCE_BYTES], raw[SEAL_NONCE_BYTES:]
            hidden = _JSON.decode(_sealer(_key(secret)).decrypt(nonce, box, aad).decode())
        except (InvalidTag, ValueError):
            raise ProtocolError(
                Reason.MALFORMED, "params.sealed: does not open for this gateway and operation"
            ) from None
        names = SECRET_PARAMS.get(op["kind"], frozenset())
        if type(hidden) is not dict or not hidden.keys() <= names or hidden.keys() & params.keys():
            raise ProtocolError(Reason.MALFORMED, "params.sealed: holds unexpected members")
        params.update(hidden)
    opened_params(op["kind"], params)
    return params


# -- batching -----------------------------------------------------------------------


def batches(items: Iterable, limit: int = MAX_BATCH) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= limit:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_batches(
    msg_type: MsgType,
    gw: str,
    items: Iterable[dict],
    secret: bytes | str,
    *,
    validate: bool = True,
) -> Iterator[tuple[list[dict], bytes]]:
    """Signed messages carrying ``items``, each within MAX_BATCH and MAX_PAYLOAD_BYTES.

    Yields ``(items_in_this_message, payload)``; a chunk that encodes too large is
    halved until it fits (one item that cannot fit alone raises OVERSIZED).
    """
    key = BATCH_KEY[msg_type]
    for chunk in batches(items):
        stack = [chunk]
        while stack:
            part = stack.pop()
            try:
                payload = encode(Message(msg_type, gw, {key: part}), secret, validate=validate)
            except ProtocolError as e:
                if e.reason is not Reason.OVERSIZED or len(part) == 1:
                    raise
                half = len(part) // 2
                stack += [part[half:], part[:half]]
                continue
            yield part, payload


# -- devices a message speaks for -----------------------------------------------------


def item_devices(msg_type: MsgType, item: dict) -> list[dict]:
    """The devices one batch item names (``serial`` and, when given, ``hardware_id``)."""
    if msg_type is MsgType.DISCOVERY:
        return [item]
    if msg_type in (MsgType.EVENT, MsgType.COMMAND) or "device" in item:
        return [item["device"]]
    return []


def device_refs(msg: Message) -> list[dict]:
    """Every device a message names."""
    if msg.type not in BATCH_KEY:
        return []
    return [ref for item in msg.items for ref in item_devices(msg.type, item)]


def drop_foreign(msg: Message, owns: Callable[[dict], bool]) -> tuple[Message | None, list[dict]]:
    """Split a batch into what its gateway may speak for and the items it may not.

    ``owns(item)`` is the receiver's rule (the bridge: every device the item names is
    bound to this gateway or to none in its organization, and a result or progress item
    belongs to an operation sent to this gateway). Returns the message with the items
    kept (None when none are) and the dropped items, which the receiver counts as
    FOREIGN_DEVICE: one gateway's bad item never costs the rest of its batch.
    """
    if msg.type not in BATCH_KEY:
        return msg, []
    kept, dropped = [], []
    for item in msg.items:
        (kept if owns(item) else dropped).append(item)
    if not dropped:
        return msg, []
    if not kept:
        return None, dropped
    body = {**msg.body, BATCH_KEY[msg.type]: kept}
    return Message(msg.type, msg.gw, body, msg.id, msg.ts, msg.v), dropped
