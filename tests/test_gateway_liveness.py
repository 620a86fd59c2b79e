"""A gateway is online only while its link is: what marks it online, what marks it
offline, and what must never leave it showing Online after its link is gone."""

import itertools

import pytest

from devices.ingest import GatewayRef, ingest
from devices.models import Gateway
from gateway.protocol import Message, MsgType, now_ms
from tests.factories import make_gateway, make_organization

pytestmark = pytest.mark.django_db

S0, S1 = "0" * 32, "1" * 32
# Statuses apply in signed order (docs/gateway-protocol.md §2): each message of a test is
# signed a millisecond after the one before, as a real gateway's would be.
_clock = itertools.count(now_ms())


def ref(gateway) -> GatewayRef:
    return GatewayRef(gateway.id, gateway.uid, gateway.organization_id, "s" * 32)


def hello(session):
    return Message(
        MsgType.HELLO,
        "gw",
        {"agent": "test", "driver": "simulated", "session": session, "devices": 0, "kinds": []},
        ts=next(_clock),
    )


def status(state, session, *, will=False):
    return Message(
        MsgType.STATUS,
        "gw",
        {"state": state, "session": session, "will": will},
        ts=next(_clock),
    )


def online(gateway) -> bool:
    gateway.refresh_from_db()
    return gateway.is_online


@pytest.fixture
def gateway():
    return make_gateway(make_organization("Link Co"), uid="gw")


def test_the_will_of_a_session_whose_hello_was_missed_takes_the_gateway_offline(gateway):
    """The hello is not retained: a bridge that subscribes after the gateway connected
    (its first start, or a broker that lost its sessions) gets only the retained online
    status. That status names the session; its last will must still count, or the
    gateway shows Online for ever after it dies."""
    ingest([(ref(gateway), hello(S0)), (ref(gateway), status("online", S0))])
    ingest([(ref(gateway), status("offline", S0))])  # a clean stop
    assert not online(gateway)

    ingest([(ref(gateway), status("online", S1))])  # restarted; its hello never arrived
    assert online(gateway)
    ingest([(ref(gateway), status("offline", S1, will=True))])  # killed: the broker's will
    assert not online(gateway)


def test_a_will_of_an_older_session_still_changes_nothing(gateway):
    ingest([(ref(gateway), status("online", S0))])
    ingest([(ref(gateway), status("online", S1))])
    ingest([(ref(gateway), status("offline", S0, will=True))])  # late, from before
    assert online(gateway)


def test_seeded_gateways_are_offline_until_their_link_says_otherwise():
    from django.core.management import call_command

    call_command("seed_demo", stdout=__import__("io").StringIO())
    assert not Gateway.objects.filter(is_online=True).exists()
    assert not Gateway.objects.exclude(last_seen=None).exists()


def result(op="0" * 32):
    return Message(
        MsgType.RESULT, "gw", {"results": [{"op": op, "ok": False, "code": "internal", "at": 1}]}
    )


def test_a_late_result_does_not_bring_a_dead_gateway_back_online(gateway):
    """Results have their own writer in the bridge: one the gateway sent just before it
    died can be written after its will. It says when the gateway was last heard from,
    not that its link is up."""
    ingest([(ref(gateway), hello(S1)), (ref(gateway), status("online", S1))])
    ingest([(ref(gateway), status("offline", S1, will=True))])
    gateway.refresh_from_db()
    died = gateway.last_seen

    outcome = ingest([(ref(gateway), result())])
    assert not online(gateway)
    assert gateway.last_seen > died
    assert outcome.changes.gateways[gateway.organization_id][gateway.id]["online"] is False


@pytest.mark.parametrize("name", ["devices:gateways-widget", "devices:widget", "enrollment:widget"])
def test_the_full_pages_follow_the_link_live(client, name):
    """A Gateways page left open showed Online for ever: only the dashboard listened to
    the live socket. The full pages of the live lists listen too."""
    from django.urls import reverse

    from portal.choices import Role
    from tests.factories import make_member

    client.force_login(make_member(make_organization("Open Page Co"), [Role.ADMINISTRATOR]))
    body = client.get(reverse(name)).content.decode()
    assert 'data-live-url="/ws/live/"' in body and "js/live.js" in body
