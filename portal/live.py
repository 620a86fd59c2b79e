"""Pushing changes to the browsers of one organization.

Every open dashboard joins its organization's group (``org_group``); producers (the
bridge, jobs, views) call ``publish`` with one message that may carry many row
updates — coalescing is the producer's job, so a 10,000-device action is a handful
of messages, not 10,000.
"""

import contextlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def org_group(organization_id: int) -> str:
    return f"org.{organization_id}"


def user_group(user_id: int) -> str:
    """Every open socket of one user: told when that user's access may have changed."""
    return f"user.{user_id}"


def access_changed(user_id: int, ended_session: str | None = None) -> None:
    """Tell ``user_id``'s open sockets to re-check their access now (sync code).

    ``ended_session``: a session that just logged out; its sockets close without a check.
    Called by ``portal.signals`` after a logout, a membership change or an account change.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "access.changed", "ended_session": ended_session or ""}
    try:
        async_to_sync(layer.group_send)(user_group(user_id), message)
    except Exception:  # Redis away: the sockets' own periodic check still closes them
        logger.warning(
            "Could not tell user %s's sockets to re-check access", user_id, exc_info=True
        )


def publish(organization_id: int, kind: str, **payload) -> None:
    """Send ``{"kind": kind, **payload}`` to every browser of the organization (sync code)."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        org_group(organization_id), {"type": "org.message", "message": {"kind": kind, **payload}}
    )


async def apublish(organization_id: int, kind: str, **payload) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(
            org_group(organization_id),
            {"type": "org.message", "message": {"kind": kind, **payload}},
        )


class BackgroundPublisher:
    """Publishes from a long-running sync process (the bridge) on one private event loop.

    ``async_to_sync`` would build a loop, and a Redis connection, per call; this keeps
    one of each for the life of the process. Sends are fire-and-forget: browsers
    resynchronise from a snapshot, so a lost update costs nothing lasting.
    """

    def __init__(self):
        import asyncio
        import threading

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="live-publisher", daemon=True
        )
        self._thread.start()
        self.layer = get_channel_layer()

    def publish(self, organization_id: int, kind: str, **payload):
        if self.layer is None:
            return None
        message = {"type": "org.message", "message": {"kind": kind, **payload}}
        return self._asyncio.run_coroutine_threadsafe(
            self.layer.group_send(org_group(organization_id), message), self.loop
        )

    def close(self, timeout: float = 2.0) -> None:
        async def drain():
            pending = [
                t for t in self._asyncio.all_tasks() if t is not self._asyncio.current_task()
            ]
            if pending:
                await self._asyncio.wait(pending, timeout=timeout)
            flush = getattr(self.layer, "flush", None)
            if flush:
                await flush()

        with contextlib.suppress(Exception):  # closing: nobody is left to tell
            self._asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
