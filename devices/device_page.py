"""What the device page shows besides the device's own fields, from every app.

The page is laid out for a device's whole story: a timeline (state changes,
operations, events, image loads, replacements, winks, audit entries as they come) and
panels beside it (the installation photo, ...). Apps contribute without the devices
app importing them (enrollment → devices, never back): in their ``AppConfig.ready``
they append to ``TIMELINE_SOURCES`` and ``PANELS``. Each source is one query, so the
page costs a fixed number of queries whatever the device's history.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from django.urls import reverse

from devices.choices import EVENT_KIND_COLOURS, OPERATION_STATE_COLOURS
from devices.models import Device, DeviceEvent

TIMELINE_LENGTH = 20


@dataclass(frozen=True)
class Entry:
    """One line of a device's timeline."""

    at: datetime
    kind: str  # what made it: "operation", "event", "enrollment", ... (a CSS hook)
    title: str
    detail: str = ""
    badge: str = ""  # the outcome, in a badge
    colour: str = "grey"  # the badge's colour
    url: str = ""


@dataclass(frozen=True)
class Panel:
    """A card beside the timeline, rendered from ``template`` with ``context``."""

    key: str
    title: str
    template: str
    context: dict = field(default_factory=dict)


TIMELINE_SOURCES: list[Callable[[Device, int], Iterable[Entry]]] = []
PANELS: list[Callable[[Device], Panel | None]] = []


def timeline(device: Device, limit: int = TIMELINE_LENGTH) -> list[Entry]:
    """The newest ``limit`` entries of every source, newest first."""
    entries = chain.from_iterable(source(device, limit) for source in TIMELINE_SOURCES)
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:limit]


def panels(device: Device) -> list[Panel]:
    return [panel for panel in (make(device) for make in PANELS) if panel]


def operations(device: Device, limit: int) -> list[Entry]:
    rows = device.operations.select_related("bulk").order_by("-id")[:limit]
    return [
        Entry(
            at=op.finished_at or op.created_at,
            kind="operation",
            title=op.bulk.get_kind_display(),
            detail=op.error
            or (f"{op.attempts} attempt{'s' if op.attempts != 1 else ''}" if op.attempts else ""),
            badge=op.get_state_display(),
            colour=OPERATION_STATE_COLOURS.get(op.state, "grey"),
            url=reverse("devices:operation-detail", args=[op.bulk_id]),
        )
        for op in rows
    ]


def events(device: Device, limit: int) -> list[Entry]:
    rows = DeviceEvent.objects.filter(device=device).order_by("-id")[:limit]
    return [
        Entry(
            at=event.occurred_at,
            kind="event",
            title=f"Event: {event.kind}",
            detail=event.message,
            badge=event.kind,
            colour=EVENT_KIND_COLOURS.get(event.kind, "grey"),
        )
        for event in rows.only("kind", "message", "occurred_at")
    ]


TIMELINE_SOURCES.extend([operations, events])
