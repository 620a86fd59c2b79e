"""The dashboard WebSocket, through the real Redis channel layer."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import reverse

from portal import membership as rules
from portal.asgi import application
from portal.consumers import ACCESS_CHANGED, FORBIDDEN, UNAUTHENTICATED
from portal.live import apublish
from portal.models import Membership
from portal.tenancy import SESSION_KEY
from tests.factories import make_member, make_membership, make_organization

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def session_cookie(user, organization=None):
    client = Client()
    client.force_login(user)
    if organization is not None:
        session = client.session
        session[SESSION_KEY] = organization.pk
        session.save()
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def communicator(cookie=None):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


async def connect(cookie):
    ws = communicator(cookie)
    connected, code = await ws.connect(timeout=5)
    return ws, connected, code


def test_anonymous_socket_is_refused():
    async def scenario():
        ws, connected, code = await connect(None)
        await ws.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, UNAUTHENTICATED)


def test_member_receives_own_organization_and_never_another():
    mine, theirs = make_organization(), make_organization()
    alice = make_member(mine)
    bob = make_member(theirs)

    async def scenario():
        alice_ws, ok_a, _ = await connect(await asyncio.to_thread(session_cookie, alice))
        bob_ws, ok_b, _ = await connect(await asyncio.to_thread(session_cookie, bob))
        assert ok_a and ok_b
        assert (await alice_ws.receive_json_from(timeout=5))["organization"] == mine.pk
        assert (await bob_ws.receive_json_from(timeout=5))["organization"] == theirs.pk
        await apublish(mine.pk, "devices", rows=[{"id": 1, "state": "provisioned"}])
        got = await alice_ws.receive_json_from(timeout=5)
        bob_nothing = await bob_ws.receive_nothing(timeout=0.5)
        await alice_ws.disconnect()
        await bob_ws.disconnect()
        return got, bob_nothing

    got, bob_nothing = async_to_sync(scenario)()
    assert got == {"kind": "devices", "rows": [{"id": 1, "state": "provisioned"}]}
    assert bob_nothing


def test_socket_follows_the_organization_chosen_in_the_session():
    first, second = make_organization(), make_organization()
    user = make_member(first)
    make_membership(user, second)

    async def scenario():
        cookie = await asyncio.to_thread(session_cookie, user, second)
        ws, connected, _ = await connect(cookie)
        hello = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return connected, hello

    connected, hello = async_to_sync(scenario)()
    assert connected and hello["organization"] == second.pk


def test_user_without_membership_is_refused():
    from tests.factories import make_user

    user = make_user()

    async def scenario():
        ws, connected, code = await connect(await asyncio.to_thread(session_cookie, user))
        await ws.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected and code == 4403


# --- access ends: the socket closes within seconds (issue 10, point 4) -------------------


def logged_in_client(user):
    client = Client()
    client.force_login(user)
    return client


async def live_socket(client):
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    ws, connected, _ = await connect(cookie)
    assert connected
    assert (await ws.receive_json_from(timeout=5))["kind"] == "hello"
    return ws


async def closed_with(ws, timeout=5):
    """The close code the server sent, skipping organization updates before it."""
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


def test_logging_out_closes_that_sessions_socket_and_no_other():
    org = make_organization()
    user = make_member(org)

    async def scenario():
        laptop = await asyncio.to_thread(logged_in_client, user)
        phone = await asyncio.to_thread(logged_in_client, user)
        laptop_ws, phone_ws = await live_socket(laptop), await live_socket(phone)
        await asyncio.to_thread(laptop.post, reverse("logout"))
        code = await closed_with(laptop_ws)
        await apublish(org.pk, "devices", rows=[{"id": 1}])
        still = await phone_ws.receive_json_from(timeout=5)
        await phone_ws.disconnect()
        return code, still

    code, still = async_to_sync(scenario)()
    assert code == UNAUTHENTICATED
    assert still == {"kind": "devices", "rows": [{"id": 1}]}


def test_removing_the_membership_closes_the_socket():
    org = make_organization()
    admin = make_member(org, ["administrator"])
    user = make_member(org, ["device_manager"])

    async def scenario():
        ws = await live_socket(await asyncio.to_thread(logged_in_client, user))
        membership = await asyncio.to_thread(Membership.objects.get, user=user)
        await asyncio.to_thread(rules.remove, admin, membership)
        return await closed_with(ws)

    assert async_to_sync(scenario)() == FORBIDDEN


def test_changing_the_role_groups_closes_the_socket_for_a_reconnect():
    org = make_organization()
    admin = make_member(org, ["administrator"])
    user = make_member(org, ["device_manager"])

    async def scenario():
        ws = await live_socket(await asyncio.to_thread(logged_in_client, user))
        membership = await asyncio.to_thread(Membership.objects.get, user=user)
        await asyncio.to_thread(rules.change_roles, admin, membership, [])
        return await closed_with(ws)

    assert async_to_sync(scenario)() == ACCESS_CHANGED


def test_a_deactivated_account_loses_its_socket():
    org = make_organization()
    user = make_member(org)

    async def scenario():
        ws = await live_socket(await asyncio.to_thread(logged_in_client, user))

        def deactivate():
            user.is_active = False
            user.save(update_fields=["is_active"])

        await asyncio.to_thread(deactivate)
        return await closed_with(ws)

    assert async_to_sync(scenario)() == UNAUTHENTICATED


def test_the_periodic_check_closes_a_socket_whose_session_expired(monkeypatch):
    from django.contrib.sessions.models import Session

    from portal import consumers

    monkeypatch.setattr(consumers.OrganizationConsumer, "recheck_every_s", 0.2)
    org = make_organization()
    user = make_member(org)

    async def scenario():
        ws = await live_socket(await asyncio.to_thread(logged_in_client, user))
        await asyncio.to_thread(lambda: Session.objects.all().delete())  # no signal for this
        return await closed_with(ws)

    assert async_to_sync(scenario)() == UNAUTHENTICATED
