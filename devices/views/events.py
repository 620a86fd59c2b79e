"""The Events widget (also the /devices/events/ page) and its events-per-second feed.

The bridge writes thousands of DeviceEvent rows a second, so nothing here offsets or
counts over the table: a page is the next ``per_page`` rows below a key
(``?before=<id>``) read off the (organization, -id) or (organization, kind, -id)
index, and the rate is one grouped query over two minutes of the
(organization, received_at) index.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlparse

from django.db.models import Count, F, Func, IntegerField
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views import View

from devices.choices import EVENT_KIND_COLOURS
from devices.filters import _pick
from devices.models import Device, DeviceEvent, Gateway
from devices.views.base import render_varying, wants_partial
from gateway.protocol import EventKind
from portal.tenancy import OrganizationRequiredMixin

PAGE_SIZES = (25, 50, 100, 200)
LIVE_ROWS = 50  # rows events.js keeps while it prepends live samples
RATE_SECONDS = 120
MAX_SERIAL_LENGTH = 64  # Device.serial_number
SERIAL_DEVICE_IDS = 500  # matching devices passed by id (well below SQLite's 999 parameters)
MAX_ID = 2**63 - 1  # larger ``before`` values would overflow the database's integer

# The gateway protocol admits only these kinds, so the choices need no query.
KINDS = tuple(kind.value for kind in EventKind)
KIND_COLOURS = EVENT_KIND_COLOURS
WINDOWS = {
    "5m": ("Last 5 minutes", timedelta(minutes=5)),
    "1h": ("Last hour", timedelta(hours=1)),
    "1d": ("Last day", timedelta(days=1)),
}
UNKNOWN_DEVICE = " (unknown device)"  # how devices.ingest._summary marks an unknown serial


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


def _positive_id(raw):
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= MAX_ID else None


class EventFilter:
    """Kind, gateway, device serial, time window, page size and page key of the widget.

    Like ``DeviceFilter``: every value is checked against what exists (the protocol's
    kinds, the organization's gateways); anything else is dropped, so a stale or
    hand-edited URL narrows less but never fails or reaches another organization.
    """

    def __init__(self, params, gateways, base_url=""):
        self.base_url = base_url
        kind = params.get("kind", "")
        self.kind = kind if kind in KINDS else ""
        self.gateway = _pick(gateways, params.get("gateway"))
        # No spaces or control characters (PostgreSQL refuses a NUL in a query).
        serial = params.get("serial", "")
        serial = "".join(c for c in serial if c.isprintable() and not c.isspace())
        self.serial = serial[:MAX_SERIAL_LENGTH]
        window = params.get("window", "")
        self.window = window if window in WINDOWS else ""
        try:
            per_page = int(params.get("per_page", ""))
        except ValueError:
            per_page = None
        self.per_page = per_page if per_page in PAGE_SIZES else PAGE_SIZES[0]
        self.before = _positive_id(params.get("before"))

    def apply(self, events, devices, now):
        """The page's events, newest first; ``events`` and ``devices`` come scoped.

        Every filter keeps the walk down an index short. A filter that matches little
        would otherwise walk all of the organization's older events to fill a page:
        measured at 3.8 million events on SQLite, an empty "last 5 minutes" took 0.8 s
        and a serial prefix as a subquery 7 s (PostgreSQL alike); as below, ~1-30 ms.
        """
        scoped = events
        if self.kind:
            events = events.filter(kind=self.kind)  # (organization, kind, -id)
        if self.gateway:
            events = events.filter(gateway=self.gateway)
        if self.serial:
            events = self._by_serial(events, devices)
        if self.window:
            since = now - WINDOWS[self.window][1]
            # The window's first event bounds the walk by id: (organization, -id) is
            # read down to it and no further, however few events match on the way.
            # Ids grow with received_at (both are set at insert); two bridges inserting
            # at once could leave out a few events of the window's first instant.
            first = scoped.filter(received_at__gte=since).order_by("received_at", "pk")
            events = events.filter(received_at__gte=since, pk__gte=first.values("pk")[:1])
        if self.before:
            events = events.filter(pk__lt=self.before)
        return events.order_by("-pk")

    def _by_serial(self, events, devices):
        """Events of the devices whose serial starts with the search (any case).

        The devices are looked up first (one query over the organization's serials; on
        PostgreSQL ``UPPER(...) LIKE 'Q%'`` uses migration 0004's trigram index): given
        their ids as a list, both databases plan by how many there are. As a subquery,
        both read every event of every matching device to sort them.
        """
        matching = devices.filter(serial_number__istartswith=self.serial).order_by()
        ids = list(matching.values_list("pk", flat=True)[: SERIAL_DEVICE_IDS + 1])
        if len(ids) <= SERIAL_DEVICE_IDS:
            return events.filter(device_id__in=ids)  # none: no query at all
        # A short prefix that most devices share: walk the newest events and keep the
        # matching ones. "+ 0" keeps the planners off the device index, which would
        # collect every event of thousands of devices to sort them.
        return events.alias(device_key=F("device_id") + 0).filter(
            device_key__in=matching.values("pk")
        )

    @property
    def is_filtered(self):
        return bool(self.kind or self.gateway or self.serial or self.window)

    def params(self, **changes):
        """The canonical query: only what differs from the defaults."""
        values = {
            "kind": self.kind,
            "gateway": self.gateway.pk if self.gateway else "",
            "serial": self.serial,
            "window": self.window,
            "per_page": "" if self.per_page == PAGE_SIZES[0] else self.per_page,
            "before": self.before or "",
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in ("", None)}

    def url(self, **changes):
        query = urlencode(self.params(**changes))
        return f"{self.base_url}?{query}" if query else self.base_url

    @property
    def chips(self):
        """The active filters, each with the URL that drops it (and goes back to page one)."""
        chips = []
        if self.kind:
            chips.append(("kind", "Kind", self.kind))
        if self.gateway:
            chips.append(("gateway", "Gateway", self.gateway.name))
        if self.serial:
            chips.append(("serial", "Serial", f"{self.serial}…"))
        if self.window:
            chips.append(("window", "Time", WINDOWS[self.window][0]))
        return [
            {
                "field": field,
                "label": label,
                "value": value,
                "url": self.url(**{field: "", "before": ""}),
            }
            for field, label, value in chips
        ]


def _serial_of(event):
    """The device's serial; for an unknown device, the one its message starts with."""
    if event.device_id:
        return event.device.serial_number
    head, marker, _ = event.message.partition(UNKNOWN_DEVICE)
    return head if marker else ""


class EventListView(OrganizationRequiredMixin, View):
    """Newest events first: the results (an htmx swap of ``#events-results``), the whole
    widget (the dashboard's first load) or the standalone page.

    Two queries per page whatever its size: the gateways of the filter, and the page's
    rows with their device and gateway (one row more than the page, which says whether
    there is an older page); a serial search adds the lookup of its devices. No COUNT:
    at thousands of rows a second it is stale before it renders.
    """

    def get(self, request):
        gateways = list(self.scoped(Gateway).only("pk", "name", "uid").order_by("name", "pk"))
        list_url = reverse("devices:events-widget")
        events_filter = EventFilter(request.GET, gateways, base_url=list_url)
        rows = (
            events_filter.apply(self.scoped(DeviceEvent), self.scoped(Device), timezone.now())
            .select_related("device", "gateway")
            .only(
                "id",
                "kind",
                "message",
                "occurred_at",
                "received_at",
                "device__serial_number",
                "gateway__name",
                "gateway__uid",
            )
        )
        events = list(rows[: events_filter.per_page + 1])
        has_older = len(events) > events_filter.per_page
        events = events[: events_filter.per_page]
        for event in events:
            event.serial = _serial_of(event)
            event.colour = KIND_COLOURS.get(event.kind, "grey")
        context = {
            "filter": events_filter,
            "events": events,
            "gateways": gateways,
            "kinds": KINDS,
            "windows": [Choice(key, label) for key, (label, _) in WINDOWS.items()],
            "page_sizes": PAGE_SIZES,
            "older_url": events_filter.url(before=events[-1].pk) if has_older else "",
            "newest_url": events_filter.url(before="") if events_filter.before else "",
            "self_url": events_filter.url(),
            # events.js prepends live samples only where they belong: the newest,
            # unfiltered rows.
            "live": not events_filter.before and not events_filter.is_filtered,
            "live_rows": max(LIVE_ROWS, events_filter.per_page),
            "live_config": {
                "gateways": {gateway.uid: gateway.name for gateway in gateways},
                "colours": KIND_COLOURS,
                "seconds": RATE_SECONDS,
            },
            "standalone": self.is_standalone(list_url),
        }
        if not wants_partial(request):
            template = "devices/event_list.html"
        elif request.htmx.target == "events-results":
            template = "devices/_event_results.html"
        else:
            template = "devices/_events_widget.html"
        return render_varying(request, template, context)

    def is_standalone(self, list_url):
        """True on the /devices/events/ page itself, where links also update the address bar."""
        if not wants_partial(self.request):
            return True
        return urlparse(self.request.htmx.current_url or "").path == list_url


class EpochSecond(Func):
    """Whole seconds since 1970 of a datetime, with each database's own functions.

    ``TruncSecond`` on SQLite calls a Python function per row: at 5,000 events/s two
    minutes are 600,000 calls (measured: 0.33 s per 80,000 rows). ``strftime('%s', ...)``
    and ``EXTRACT(EPOCH ...)`` run inside the database, reading ``received_at`` straight
    off the index: 0.27 s for 600,000 rows on SQLite, 0.2 s for 950,000 on PostgreSQL.
    """

    arity = 1
    output_field = IntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM {sql})) AS BIGINT)", params

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        # The format goes as a parameter: a literal %s would be taken for a placeholder.
        return f"CAST(strftime(%s, {sql}) AS INTEGER)", ("%s", *params)


class EventRateView(OrganizationRequiredMixin, View):
    """Events per second of the organization over the last two minutes, for the chart.

    Seeds the chart when the widget loads and after a reconnect; from then on the live
    ``events`` messages add to it. ``counts[i]`` is the second that starts at
    ``start + i * 1000`` ms; the last one is the current, still-running second. Its
    cost follows the rate, not the size of the table: one range of the index.
    """

    def get(self, request):
        now = timezone.now()
        first = int(now.timestamp()) - RATE_SECONDS + 1
        since = datetime.fromtimestamp(first, tz=UTC)
        buckets = (
            self.scoped(DeviceEvent)
            .filter(received_at__gte=since, received_at__lt=since + timedelta(seconds=RATE_SECONDS))
            .annotate(second=EpochSecond("received_at"))
            .values("second")
            .annotate(count=Count("*"))
            .order_by("second")
            .values_list("second", "count")
        )
        counts = [0] * RATE_SECONDS
        for second, count in buckets:
            index = int(second) - first
            if 0 <= index < RATE_SECONDS:
                counts[index] += count
        response = JsonResponse(
            {
                "start": first * 1000,
                "now": int(now.timestamp() * 1000),
                "seconds": RATE_SECONDS,
                "counts": counts,
            }
        )
        response["Cache-Control"] = "no-store"
        return response
