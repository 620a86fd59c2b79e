"""The devices app's lists, filtered: devices and gateways (widgets and API), events.

One ``FilterSet`` per list (``portal.filters``): the API refuses bad values with field
errors, the widgets leave them out. Every id is checked against what the organization
really has, so a foreign id narrows nothing and reveals nothing.
"""

from dataclasses import dataclass
from datetime import timedelta

import django_filters
from django import forms
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count, F, Window
from django.utils import timezone

from devices.choices import DeviceState
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from gateway.codes import EventKind
from portal.filters import (
    ChoiceFilter,
    FilterSet,
    RowFilter,
    RowIdFilter,
    SearchFilter,
    SortFilter,
)

MAX_SEARCH_LENGTH = 100

# Each sort is a prefix of one of Device's indexes (organization, ...), then pk.
SORTS = {
    "serial": ("serial_number",),
    "name": ("name",),
    "state": ("state", "serial_number"),
    "type": ("device_type__name", "serial_number"),
    "gateway": ("gateway__name", "serial_number"),
    "updated": ("updated_at",),
}
SORT_LABELS = {
    "serial": "Serial",
    "name": "Name",
    "state": "State",
    "type": "Type",
    "gateway": "Gateway",
    "updated": "Updated",
}
DEFAULT_SORT = "serial"


@dataclass(frozen=True)
class Facets:
    """The choices of the Devices widget's filter selects, one query each."""

    types: list
    gateways: list
    groups: list

    def rows(self) -> dict:
        """For ``DeviceFilterSet(rows=...)``: ids are checked among these, no query."""
        return {"type": self.types, "gateway": self.gateways, "group": self.groups}


class DeviceFilterSet(FilterSet):
    """Search, state, type, gateway, group and sort of the Devices widget and the API.

    The widget adds its page size (``per_page``, one of ``page_sizes``) and ``page``.
    """

    q = SearchFilter(
        fields=("serial_number", "hardware_id", "name"),
        max_length=MAX_SEARCH_LENGTH,
        label="Search",
        help_text="Part of a serial number, MAC/UID or name.",
    )
    state = ChoiceFilter(choices=DeviceState.choices, label="State")
    type = RowFilter(
        field_name="device_type",
        model=DeviceType,
        scoped=False,
        missing="No such device type.",
        label="Type",
        help_text="A device type id.",
    )
    gateway = RowFilter(
        model=Gateway,
        missing="No such gateway in this organization.",
        label="Gateway",
        help_text="A gateway id.",
    )
    group = RowFilter(
        field_name="groups",
        model=DeviceGroup,
        missing="No such group in this organization.",
        label="Group",
        help_text="A group id.",
    )
    sort = SortFilter(
        sorts=SORTS,
        default=DEFAULT_SORT,
        help_text="A column, '-' first for descending. Default: serial.",
    )

    link_params = ("per_page", "page")

    def __init__(self, *args, page_sizes=(25,), **kwargs):
        super().__init__(*args, **kwargs)
        self.page_sizes = tuple(page_sizes)
        try:
            per_page = int(self.data.get("per_page", ""))
        except ValueError:
            per_page = None
        self.per_page = per_page if per_page in self.page_sizes else self.page_sizes[0]
        self.page = self.data.get("page") or 1  # the paginator forgives junk

    def link_value(self, name):
        if name == "per_page" and self.per_page != self.page_sizes[0]:
            return self.per_page
        return ""

    @property
    def device_type(self):
        return self.value("type")

    @property
    def sort_param(self):
        return self.value("sort") or DEFAULT_SORT

    @property
    def sort_key(self):
        return self.sort_param.removeprefix("-")

    @property
    def descending(self):
        return self.sort_param.startswith("-")

    @property
    def counts_in_keys(self):
        """Count inside the keys query: a search on SQLite, which no index can serve.

        PostgreSQL answers substring search from trigram indexes (migration 0004), so
        its separate COUNT stays cheap, while a window count would sort every match.
        """
        return bool(self.value("q")) and connection.vendor == "sqlite"

    @property
    def sort_links(self):
        links = {}
        for key, label in SORT_LABELS.items():
            active = key == self.sort_key
            descending = active and not self.descending  # clicking flips the active one
            links[key] = {
                "label": label,
                "url": self.url(sort=("-" if descending else "") + key),
                "active": active,
                "aria_sort": ("descending" if self.descending else "ascending")
                if active
                else "none",
            }
        return links


class KeysFirstPaginator(Paginator):
    """Pages the ordered primary keys first, then loads only those rows.

    OFFSET over an index-only scan of (organization, sort key, pk) stays cheap on deep
    pages; with the joins and wide rows in the same statement SQLite would build every
    skipped row. ``rows`` is the queryset that loads a page (select/prefetch related).

    ``count_in_keys`` suits a scan the keys query makes anyway (a substring search on
    SQLite): a window count in the same pass instead of a second scan. Measured with
    bench_widgets at 100,000 devices on SQLite: search p95 41 ms instead of 57 ms;
    without a search the separate COUNT is the cheaper one.
    """

    def __init__(self, object_list, per_page, *, rows, count_in_keys=False, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.rows = rows
        self.count_in_keys = count_in_keys

    def get_page(self, number):
        if self.count_in_keys and "count" not in self.__dict__:
            page = self._page_with_count(number)
            if page is not None:
                return page
        return super().get_page(number)

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        pks = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        return self._load(pks, number)

    def _page_with_count(self, number):
        """One query for keys and total; None sends bad or past-the-end pages the long way."""
        try:
            number = int(number)
        except (TypeError, ValueError):
            number = 1  # as Paginator.get_page forgives junk
        if number < 1:
            return None
        bottom = (number - 1) * self.per_page
        counted = self.object_list.annotate(window_total=Window(Count("*")))
        found = list(counted.values_list("pk", "window_total")[bottom : bottom + self.per_page])
        if not found and number > 1:
            return None
        self.__dict__["count"] = found[0][1] if found else 0  # Paginator.count is cached here
        return self._load([pk for pk, _ in found], number)

    def _load(self, pks, number):
        loaded = {obj.pk: obj for obj in self.rows.filter(pk__in=pks).order_by()} if pks else {}
        # A row deleted between the two queries is simply left out.
        return self._get_page([loaded[pk] for pk in pks if pk in loaded], number, self)


GATEWAY_STATUSES = {"online": True, "offline": False}


class GatewayFilterSet(FilterSet):
    """Search by name or UID and online/offline, of the Gateways widget and the API.

    Both list gateways by name (the view's queryset says so).
    """

    q = SearchFilter(
        fields=("name", "uid"),
        max_length=MAX_SEARCH_LENGTH,
        label="Search",
        help_text="Part of a name or UID.",
    )
    status = ChoiceFilter(
        choices=[("online", "Online"), ("offline", "Offline")],
        method="by_status",
        label="Status",
    )
    link_params = ("page",)

    def by_status(self, queryset, name, value):
        return queryset.filter(is_online=GATEWAY_STATUSES[value])

    @property
    def page(self):
        return self.data.get("page") or 1


# --- events -----------------------------------------------------------------------------

EVENT_PAGE_SIZES = (25, 50, 100, 200)
MAX_SERIAL_LENGTH = 64  # Device.serial_number
SERIAL_DEVICE_IDS = 500  # matching devices passed by id (well below SQLite's 999 parameters)
# The gateway protocol admits only these kinds, so the choices need no query.
EVENT_KINDS = tuple(kind.value for kind in EventKind)
WINDOWS = {
    "5m": ("Last 5 minutes", timedelta(minutes=5)),
    "1h": ("Last hour", timedelta(hours=1)),
    "1d": ("Last day", timedelta(days=1)),
}


class SerialPrefixField(forms.CharField):
    """The start of a serial number: no spaces or control characters (PostgreSQL refuses a
    NUL in a query), at most as long as a serial."""

    def to_python(self, value):
        value = "".join(c for c in super().to_python(value) if c.isprintable() and not c.isspace())
        return value[:MAX_SERIAL_LENGTH]


class SerialPrefixFilter(django_filters.CharFilter):
    field_class = SerialPrefixField

    def chip(self, value):
        return f"{value}…"


class EventFilterSet(FilterSet):
    """Kind, gateway, device serial, time window and page key of the Events widget.

    Newest first, a page at a time below a key (``before``): the bridge writes thousands
    of events a second, so nothing here offsets or counts. Every filter keeps the walk
    down an index short. A filter that matches little would otherwise walk all of the
    organization's older events to fill a page: measured at 3.8 million events on
    SQLite, an empty "last 5 minutes" took 0.8 s and a serial prefix as a subquery 7 s
    (PostgreSQL alike); as below, ~1-30 ms.
    """

    kind = ChoiceFilter(choices=[(kind, kind) for kind in EVENT_KINDS], label="Kind")
    gateway = RowFilter(model=Gateway, missing="No such gateway.", label="Gateway")
    serial = SerialPrefixFilter(method="by_serial", label="Serial")
    window = ChoiceFilter(
        choices=[(key, label) for key, (label, _) in WINDOWS.items()],
        method="in_window",
        label="Time",
    )
    before = RowIdFilter(field_name="pk", lookup_expr="lt")

    link_params = ("per_page",)
    chip_resets = ("before",)  # dropping a filter goes back to the newest page

    def __init__(self, *args, now=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now or timezone.now()
        try:
            per_page = int(self.data.get("per_page", ""))
        except ValueError:
            per_page = None
        self.per_page = per_page if per_page in EVENT_PAGE_SIZES else EVENT_PAGE_SIZES[0]

    def filter_queryset(self, queryset):
        return super().filter_queryset(queryset).order_by("-pk")

    def link_value(self, name):
        return self.per_page if self.per_page != EVENT_PAGE_SIZES[0] else ""

    @property
    def is_filtered(self):
        return any(self.raw(name) for name in ("kind", "gateway", "serial", "window"))

    def by_serial(self, events, name, serial):
        """Events of the devices whose serial starts with the search (any case).

        The devices are looked up first (one query over the organization's serials; on
        PostgreSQL ``UPPER(...) LIKE 'Q%'`` uses migration 0004's trigram index): given
        their ids as a list, both databases plan by how many there are. As a subquery,
        both read every event of every matching device to sort them.
        """
        devices = Device.objects.for_organization(self.organization)
        matching = devices.filter(serial_number__istartswith=serial).order_by()
        ids = list(matching.values_list("pk", flat=True)[: SERIAL_DEVICE_IDS + 1])
        if len(ids) <= SERIAL_DEVICE_IDS:
            return events.filter(device_id__in=ids)  # none: no query at all
        # A short prefix that most devices share: walk the newest events and keep the
        # matching ones. "+ 0" keeps the planners off the device index, which would
        # collect every event of thousands of devices to sort them.
        return events.alias(device_key=F("device_id") + 0).filter(
            device_key__in=matching.values("pk")
        )

    def in_window(self, events, name, window):
        """The window's first event bounds the walk by id: (organization, -id) is read
        down to it and no further, however few events match on the way. Ids grow with
        received_at (both are set at insert); two bridges inserting at once could leave
        out a few events of the window's first instant."""
        since = self.now - WINDOWS[window][1]
        first = self.queryset.filter(received_at__gte=since).order_by("received_at", "pk")
        return events.filter(received_at__gte=since, pk__gte=first.values("pk")[:1])
