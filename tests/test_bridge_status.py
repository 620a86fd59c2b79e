"""Online/offline applied in the order the gateway signed it, whichever bridge sees what.

``Gateway.status_ts`` holds the newest status (or hello) applied, and a conditional
UPDATE applies only a newer one. A last will applies while its session is the current
one. ``devices.ingest.ingest`` is what every bridge calls for a batch.
"""

import pytest

from devices.ingest import GatewayRef, ingest
from devices.models import Gateway
from gateway.protocol import Message, MsgType, now_ms
from tests.factories import make_gateway, make_organization

pytestmark = pytest.mark.django_db

OLD, NEW = "0" * 32, "1" * 32


@pytest.fixture
def gateway():
    return make_gateway(make_organization(), is_online=False)


def status(gateway, state, session, ts, will=False):
    body = {"state": state, "session": session, "will": will}
    ref = GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)
    return ref, Message(MsgType.STATUS, gateway.uid, body, ts=ts)


def apply(*messages):
    return ingest(list(messages))


def online(gateway) -> bool:
    return Gateway.objects.get(pk=gateway.pk).is_online


def test_an_older_signed_offline_status_does_not_mark_a_live_gateway_offline(gateway):
    t = now_ms()
    apply(status(gateway, "online", NEW, t))
    apply(status(gateway, "offline", OLD, t - 60_000))  # signed a minute earlier, replayed
    assert online(gateway)
    assert Gateway.objects.get(pk=gateway.pk).status_ts == t


def test_a_restart_seen_out_of_order_by_two_bridges_ends_online(gateway):
    t = now_ms()
    # The restart: offline (clean stop, old session), then online (new session).
    # Bridge B applies the online first; bridge A's offline arrives later.
    apply(status(gateway, "online", NEW, t + 500))
    apply(status(gateway, "offline", OLD, t))
    assert online(gateway)
    # In order, the same two end the same way.
    other = make_gateway(gateway.organization)
    apply(status(other, "offline", OLD, t), status(other, "online", NEW, t + 500))
    assert online(other)


def test_statuses_in_one_batch_apply_by_ts_not_by_arrival(gateway):
    t = now_ms()
    apply(status(gateway, "online", NEW, t + 10), status(gateway, "offline", NEW, t))
    assert online(gateway)


def test_a_will_applies_for_the_current_session_only(gateway):
    t = now_ms()
    apply(status(gateway, "online", NEW, t))
    apply(status(gateway, "offline", OLD, t - 5_000, will=True))  # a replaced connection's
    assert online(gateway)
    # The current connection's will was signed before its online status, and applies.
    apply(status(gateway, "offline", NEW, t - 1, will=True))
    assert not online(gateway)
    # The next connection says online again.
    apply(status(gateway, "online", "2" * 32, t + 1_000))
    assert online(gateway)


def test_a_hello_says_online_in_the_same_order(gateway):
    t = now_ms()
    hello = {
        "agent": "test/1",
        "driver": "simulated",
        "session": OLD,
        "devices": 0,
        "kinds": ["provision"],
        "link": "ok",
    }
    ref = GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)
    apply(status(gateway, "offline", NEW, t))
    apply((ref, Message(MsgType.HELLO, gateway.uid, hello, ts=t - 1_000)))  # older: ignored
    assert not online(gateway)
    assert Gateway.objects.get(pk=gateway.pk).agent_info == {}
    apply((ref, Message(MsgType.HELLO, gateway.uid, {**hello, "session": NEW}, ts=t + 1)))
    assert online(gateway)
    assert Gateway.objects.get(pk=gateway.pk).agent_info["session"] == NEW


def test_other_messages_do_not_bring_a_gateway_back_online(gateway):
    """A delayed event of a dead connection only updates last seen."""
    t = now_ms()
    apply(status(gateway, "online", NEW, t))
    apply(status(gateway, "offline", NEW, t - 1, will=True))
    assert not online(gateway)
    event = {"events": [{"device": {"serial": "S-1"}, "kind": "telemetry", "ts": t + 5}]}
    ref = GatewayRef(gateway.id, gateway.uid, gateway.organization_id, gateway.secret)
    apply((ref, Message(MsgType.EVENT, gateway.uid, event, ts=t + 10)))
    refreshed = Gateway.objects.get(pk=gateway.pk)
    assert not refreshed.is_online and refreshed.last_seen is not None
