"""Pushing changes to the browsers of one organization.

Every open dashboard joins its organization's group (``org_group``); producers (the
bridge, jobs, views) call ``publish`` with one message that may carry many row
updates — coalescing is the producer's job, so a 10,000-device action is a handful
of messages, not 10,000.
"""

import contextlib

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def org_group(organization_id: int) -> str:
    return f"org.{organization_id}"


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
