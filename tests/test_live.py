"""The dashboard WebSocket, through the real Redis channel layer."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from portal.asgi import application
from portal.consumers import UNAUTHENTICATED
from portal.live import apublish
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
