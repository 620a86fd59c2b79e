"""WebSocket consumers. The organization check lives once, in ``OrganizationConsumer``."""

import asyncio
import contextlib

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from portal import permissions
from portal.live import org_group, user_group
from portal.models import Membership
from portal.tenancy import SESSION_KEY, choose_membership, memberships_of

UNAUTHENTICATED = 4401  # logged out, session over: the page stops retrying
FORBIDDEN = 4403  # no longer a member (or the role no longer allows it): stops too
ACCESS_CHANGED = 4409  # still a member, other role groups: reconnect and reload
# A safety net under the pushed re-checks (portal.signals): a session that simply
# expired, or a push lost with Redis, closes the socket within this many seconds.
RECHECK_EVERY_S = 30.0


class OrganizationConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only a logged-in member, and joins only that member's current organization.

    The organization comes from the session, exactly as for HTTP views, so a user can
    never subscribe to another organization by choosing a URL or a message. Access is
    checked again whenever ``portal.signals`` says it may have changed (logout,
    membership or role change, account change) and every ``RECHECK_EVERY_S``; a socket
    that lost its access is closed.
    """

    required_rule = "view"
    recheck_every_s = RECHECK_EVERY_S

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        session = self.scope.get("session") or {}
        memberships = await database_sync_to_async(memberships_of)(user)
        self.membership = choose_membership(memberships, session.get(SESSION_KEY))
        if self.membership is None or not permissions.allows(
            self.required_rule, self.membership.roles
        ):
            await self.close(code=FORBIDDEN)
            return
        self.user_id = user.pk
        self.session_key = getattr(session, "session_key", None) or ""
        self.organization_id = self.membership.organization_id
        self.group = org_group(self.organization_id)
        self.own_group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.own_group, self.channel_name)
        await self.accept()
        await self.send_json({"kind": "hello", "organization": self.organization_id})
        self.watch = asyncio.create_task(self.recheck_periodically())

    async def disconnect(self, code):
        if watch := getattr(self, "watch", None):
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.own_group, self.channel_name)

    async def org_message(self, event):
        await self.send_json(event["message"])

    async def access_changed(self, event):
        ended = event.get("ended_session")
        if ended:
            if self.session_key and constant_time_compare(ended, self.session_key):
                await self.close(code=UNAUTHENTICATED)
            return
        await self.recheck()

    async def recheck_periodically(self):
        while True:
            await asyncio.sleep(self.recheck_every_s)
            await self.recheck()

    async def recheck(self):
        code = await database_sync_to_async(self.lost_access)()
        if code is not None:
            await self.close(code=code)

    def lost_access(self) -> int | None:
        """The close code when this socket may no longer receive updates, else None."""
        user = get_user_model()._default_manager.filter(pk=self.user_id, is_active=True).first()
        if user is None:
            return UNAUTHENTICATED
        store = import_string(settings.SESSION_ENGINE + ".SessionStore")(self.session_key)
        if not self.session_key or not store.exists(self.session_key):
            return UNAUTHENTICATED
        if not constant_time_compare(store.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
            return UNAUTHENTICATED  # password changed elsewhere: this session is over
        membership = Membership.objects.filter(
            user_id=self.user_id, organization_id=self.organization_id
        ).first()
        if membership is None or not permissions.allows(self.required_rule, membership.roles):
            return FORBIDDEN
        if membership.roles != self.membership.roles:
            return ACCESS_CHANGED
        return None


class LiveConsumer(OrganizationConsumer):
    """The dashboard's one socket: every widget's live updates for the organization.

    After (re)connecting, the page reloads its widgets' bodies (the snapshot), then
    applies the row updates that follow.
    """
