"""Pushing changes to the browsers of one organization.

Every open dashboard joins its organization's group (``org_group``); producers (the
bridge, jobs, views) call ``publish`` with one message that may carry many row
updates — coalescing is the producer's job, so a 10,000-device action is a handful
of messages, not 10,000.
"""

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
