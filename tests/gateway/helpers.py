"""Small builders shared by the gateway tests (no Django anywhere)."""

from gateway.protocol import Channel, Message, MsgType, encode, seal_params, topic

UID = "gw-test-01"
SECRET = "test-secret-0123456789"
IMAGE_SHA = "ab" * 32


def lookup(uid):
    return SECRET if uid == UID else None


def op(i, kind="provision", serial=None, **params):
    item = {"op": f"op-{i}", "kind": kind, "device": {"serial": serial or f"SIM-{UID}-{i:05d}"}}
    if params:
        item["params"] = params
    return item


def sealed(item, uid=UID, secret=SECRET):
    """``item`` as the portal sends it: access keys and tokens sealed to the gateway."""
    return seal_params(item, uid, secret)


def result(i, ok=True, code="ok", **extra):
    return {"op": f"op-{i}", "ok": ok, "code": code, **extra}


def event(serial="SIM-1", ts=1_767_225_600_000, **data):
    return {"device": {"serial": serial}, "kind": "telemetry", "ts": ts, "data": data}


def command(ops, uid=UID, **fields):
    return Message(MsgType.COMMAND, uid, {"ops": ops}, **fields)


def wire(msg, secret=SECRET):
    """(topic, payload) as a sender would publish ``msg``."""
    return topic(msg.gw, msg.type), encode(msg, secret)


CMD_TOPIC = topic(UID, Channel.CMD)
RES_TOPIC = topic(UID, Channel.RES)
EVT_TOPIC = topic(UID, Channel.EVT)
