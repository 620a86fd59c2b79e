"""WebSocket consumers. The organization check lives once, in ``OrganizationConsumer``."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal import permissions
from portal.live import org_group
from portal.tenancy import SESSION_KEY, choose_membership, memberships_of

UNAUTHENTICATED = 4401
FORBIDDEN = 4403


class OrganizationConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only a logged-in member, and joins only that member's current organization.

    The organization comes from the session, exactly as for HTTP views, so a user can
    never subscribe to another organization by choosing a URL or a message.
    """

    required_rule = "view"

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
        self.organization_id = self.membership.organization_id
        self.group = org_group(self.organization_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"kind": "hello", "organization": self.organization_id})

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def org_message(self, event):
        await self.send_json(event["message"])


class LiveConsumer(OrganizationConsumer):
    """The dashboard's one socket: every widget's live updates for the organization.

    After (re)connecting, the page reloads its widgets' bodies (the snapshot), then
    applies the row updates that follow.
    """
