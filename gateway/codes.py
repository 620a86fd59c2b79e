"""Names and limits of the gateway link, shared by the portal's bridge and the agent.

Kept apart from the codec so the body validators and the drivers can import them
without pulling in signing or replay handling. ``gateway.protocol`` re-exports all of it.
"""

from enum import StrEnum

PROTOCOL_VERSION = 1
TOPIC_ROOT = "fleetgate/v1/gw"

# Limits. A message above MAX_PAYLOAD_BYTES is refused before it is parsed; a batch
# (operations, results, progress items, events, discovered devices) holds at most
# MAX_BATCH items, so one message never asks a receiver for unbounded work.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH = 500
REPLAY_WINDOW_S = 120
SIG_HEX_LEN = 64


class Reason(StrEnum):
    """Why a message was refused; the bridge counts rejections by these."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"
    UNKNOWN_GATEWAY = "unknown_gateway"
    FOREIGN_DEVICE = "foreign_device"
    UNSUPPORTED_VERSION = "unsupported_version"


class ProtocolError(Exception):
    """A refused message. ``reason`` is for counting, ``detail`` for the log."""

    def __init__(self, reason: Reason, detail: str = ""):
        self.reason = Reason(reason)
        self.detail = detail
        super().__init__(f"{self.reason.value}: {detail}" if detail else self.reason.value)


class Channel(StrEnum):
    """The last topic level: who speaks on it and what it carries."""

    CMD = "cmd"  # portal -> gateway: command
    RES = "res"  # gateway -> portal: result, progress
    EVT = "evt"  # gateway -> portal: hello, discovery, event
    STATUS = "status"  # gateway -> portal: status (retained; the last will)


class MsgType(StrEnum):
    HELLO = "hello"
    STATUS = "status"
    DISCOVERY = "discovery"
    EVENT = "event"
    COMMAND = "command"
    RESULT = "result"
    PROGRESS = "progress"


CHANNEL_OF: dict[MsgType, Channel] = {
    MsgType.COMMAND: Channel.CMD,
    MsgType.RESULT: Channel.RES,
    MsgType.PROGRESS: Channel.RES,
    MsgType.HELLO: Channel.EVT,
    MsgType.DISCOVERY: Channel.EVT,
    MsgType.EVENT: Channel.EVT,
    MsgType.STATUS: Channel.STATUS,
}

# The body key that holds the list of a batched message type.
BATCH_KEY: dict[MsgType, str] = {
    MsgType.COMMAND: "ops",
    MsgType.RESULT: "results",
    MsgType.PROGRESS: "progress",
    MsgType.EVENT: "events",
    MsgType.DISCOVERY: "devices",
}


class OpKind(StrEnum):
    ENROLL = "enroll"
    PROVISION = "provision"
    DEPROVISION = "deprovision"
    REPROVISION = "reprovision"
    UNENROLL = "unenroll"
    WINK = "wink"
    LOAD_IMAGE = "load_image"


class ResultCode(StrEnum):
    """The outcome of one operation. Only ``ok`` goes with ``"ok": true``."""

    OK = "ok"
    FAILED = "failed"  # the device or link reported an error
    TIMEOUT = "timeout"  # no answer from the device within the gateway's deadline
    NOT_FOUND = "not_found"  # no such device on this gateway's link
    BUSY = "busy"  # the device is in another operation; retry later
    INVALID_STATE = "invalid_state"  # the device cannot do this in its current state
    BAD_PARAMS = "bad_params"  # the parameters do not fit this device
    UNSUPPORTED = "unsupported"  # this gateway's driver cannot do this kind of operation
    REJECTED = "rejected"  # the device refused (negative acknowledgement)
    DOWNLOAD_FAILED = "download_failed"  # the image could not be fetched from the portal
    CHECKSUM_MISMATCH = "checksum_mismatch"  # the image's SHA-256 or size is wrong
    NO_ADAPTER = "no_adapter"  # the gateway has no working radio for its link
    INTERNAL = "internal"  # a bug in the gateway; see its log


class LinkState(StrEnum):
    """Whether the gateway's local link (radio, bus) works; reported in hello."""

    OK = "ok"
    UNAVAILABLE = "unavailable"


class DeviceLinkState(StrEnum):
    """A device's own idea of itself, as the gateway sees it on the link."""

    FACTORY = "factory"  # never enrolled, or reset by unenroll
    PROVISIONED = "provisioned"
    DEPROVISIONED = "deprovisioned"


class EventKind(StrEnum):
    TELEMETRY = "telemetry"
    ALARM = "alarm"
    STATE = "state"
    LOG = "log"


class GatewayStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class ProgressPhase(StrEnum):
    DOWNLOAD = "download"  # gateway <- portal
    TRANSFER = "transfer"  # gateway -> device
