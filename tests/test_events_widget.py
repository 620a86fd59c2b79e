"""The Events widget (/devices/events/) and its events-per-second feed: organization
scoping, filters, keyset pages, a pinned query count and the rate's buckets."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices.models import DeviceEvent
from devices.views.events import RATE_SECONDS
from portal.widgets import visible_widgets
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
)

pytestmark = pytest.mark.django_db

URL = "/devices/events/"
RATE_URL = "/devices/events/rate/"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}
RESULTS = {**HTMX, "HTTP_HX_TARGET": "events-results"}


def make_events(organization, count, *, received_at=None, **fields):
    """``count`` events in one insert; ``received_at`` is auto_now_add, so set it after."""
    fields.setdefault("kind", "telemetry")
    now = timezone.now()
    events = DeviceEvent.objects.bulk_create(
        DeviceEvent(
            organization=organization,
            message=fields.pop("message", None) or f"event {i}",
            occurred_at=now,
            **fields,
        )
        for i in range(count)
    )
    ids = list(
        DeviceEvent.objects.filter(organization=organization)
        .order_by("-pk")
        .values_list("pk", flat=True)[:count]
    )
    if received_at is not None:
        DeviceEvent.objects.filter(pk__in=ids).update(received_at=received_at)
    assert len(events) == len(ids) == count
    return sorted(ids, reverse=True)


def event_ids(response):
    """Event ids of the rows, in page order."""
    return [int(pk) for pk in re.findall(r'<tr data-event-id="(\d+)"', response.content.decode())]


def older_url(response):
    match = re.search(r'id="events-older" href="([^"]+)"(?![^>]*hidden)', response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else None


@pytest.fixture
def world(org, other_org):
    """Own events on two gateways and devices (and one unknown device); a rival's spy."""
    sensor = make_device_type("Sensor")
    north, south = make_gateway(org, name="North"), make_gateway(org, name="South")
    boiler = make_device(org, sensor, serial_number="BOIL-100", gateway=north)
    lamp = make_device(org, sensor, serial_number="LAMP-200", gateway=south)
    spy_gateway = make_gateway(other_org, name="Spy gateway")
    spy_device = make_device(other_org, sensor, serial_number="BOIL-999", gateway=spy_gateway)
    ids = {
        "boiler": make_events(org, 1, gateway=north, device=boiler, kind="alarm", message="hot")[0],
        "lamp": make_events(org, 1, gateway=south, device=lamp, message="LAMP-200: lux=4")[0],
        "unknown": make_events(
            org, 1, gateway=south, kind="log", message="GHOST-1 (unknown device): rssi=-70"
        )[0],
        "spy": make_events(
            other_org, 1, gateway=spy_gateway, device=spy_device, message="SPY-MARK"
        )[0],
    }
    return {
        "ids": ids,
        "north": north,
        "south": south,
        "boiler": boiler,
        "lamp": lamp,
        "spy_gateway": spy_gateway,
    }


# --- rendering and scoping ------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    for url in (URL, RATE_URL):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_widget_is_registered_for_every_member():
    widget = next(w for w in visible_widgets(frozenset()) if w.key == "events")
    assert (widget.title, widget.url_name, widget.order) == ("Events", "devices:events-widget", 40)


def test_dashboard_loads_the_widget_and_its_script(login, viewer):
    body = login(viewer).get(reverse("dashboard")).content.decode()
    assert 'id="widget-events"' in body and f'hx-get="{URL}"' in body
    assert "js/events.js" in body


def test_full_page_shows_only_this_organizations_events_newest_first(login, viewer, world):
    response = login(viewer).get(URL)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body and "js/events.js" in body
    ids = world["ids"]
    assert event_ids(response) == [ids["unknown"], ids["lamp"], ids["boiler"]]
    assert "SPY-MARK" not in body and "Spy gateway" not in body and "BOIL-999" not in body
    assert "HX-Request" in response["Vary"]


def test_rows_link_known_devices_and_name_unknown_ones(login, viewer, world):
    body = login(viewer).get(URL).content.decode()
    boiler_url = reverse("devices:detail", args=[world["boiler"].pk])
    assert f'<a href="{boiler_url}">BOIL-100</a>' in body
    assert 'GHOST-1 <span class="muted small">(unknown)</span>' in body
    assert '<span class="badge badge-red">alarm</span>' in body
    assert '<td class="col-gateway">North</td>' in body


def test_htmx_load_renders_the_widget_and_a_results_swap_only_the_results(login, viewer, world):
    client = login(viewer)
    body = client.get(URL, **HTMX).content.decode()
    assert "<html" not in body
    assert 'id="events-widget"' in body and 'id="events-filter"' in body
    assert 'id="events-chart-svg" role="img" aria-label=' in body
    assert 'id="events-config"' in body and '"North"' in body and "Spy gateway" not in body
    assert f'data-rate-url="{RATE_URL}"' in body
    body = client.get(URL, {"kind": "alarm"}, **RESULTS).content.decode()
    assert 'id="events-results"' in body and 'id="events-filter"' not in body
    assert 'hx-trigger="liveResync from:body"' in body


def test_only_the_newest_unfiltered_page_takes_live_rows(login, viewer, world):
    client = login(viewer)
    assert 'data-live="true"' in client.get(URL).content.decode()
    assert 'data-live="false"' in client.get(URL, {"kind": "log"}).content.decode()
    assert 'data-live="false"' in client.get(URL, {"before": 10**9}).content.decode()


# --- filters --------------------------------------------------------------------------


def test_filter_by_kind_gateway_and_serial(login, viewer, world):
    client, ids = login(viewer), world["ids"]
    assert event_ids(client.get(URL, {"kind": "alarm"})) == [ids["boiler"]]
    assert event_ids(client.get(URL, {"gateway": world["south"].pk})) == [
        ids["unknown"],
        ids["lamp"],
    ]
    both = {"gateway": world["south"].pk, "kind": "log"}
    assert event_ids(client.get(URL, both)) == [ids["unknown"]]


@pytest.mark.parametrize(
    ("serial", "expected"),
    [
        ("BOIL-100", ["boiler"]),  # exact
        ("boil", ["boiler"]),  # prefix, any case; never the rival's BOIL-999
        ("  LAMP ", ["lamp"]),  # whitespace is dropped
        ("100", []),  # a prefix, not a substring
        ("B%", []),  # LIKE wildcards are literal
        ("GHOST", []),  # unknown devices have no device row to match
    ],
)
def test_serial_search(login, viewer, world, serial, expected):
    response = login(viewer).get(URL, {"serial": serial})
    assert event_ids(response) == [world["ids"][name] for name in expected]


def test_a_prefix_most_devices_share_gives_the_same_events(login, viewer, world, monkeypatch):
    """Past SERIAL_DEVICE_IDS matching devices the search walks the newest events instead."""
    client = login(viewer)
    by_list = event_ids(client.get(URL, {"serial": "b"}))
    monkeypatch.setattr("devices.filters.SERIAL_DEVICE_IDS", 0)
    with CaptureQueriesContext(connection) as queries:
        by_walk = event_ids(client.get(URL, {"serial": "b"}))
    assert by_walk == by_list == [world["ids"]["boiler"]]
    events_sql = next(q["sql"] for q in queries if 'FROM "devices_deviceevent"' in q["sql"])
    assert '("devices_deviceevent"."device_id" + 0) IN (SELECT' in events_sql
    assert event_ids(client.get(URL, {"serial": "zz"})) == []


def test_time_window(login, viewer, org):
    now = timezone.now()
    old = make_events(org, 1, received_at=now - timedelta(hours=2))
    recent = make_events(org, 1, received_at=now - timedelta(minutes=30))
    fresh = make_events(org, 1, received_at=now - timedelta(seconds=30))
    client = login(viewer)
    assert event_ids(client.get(URL, {"window": "5m"})) == fresh
    assert event_ids(client.get(URL, {"window": "1h"})) == fresh + recent
    assert event_ids(client.get(URL, {"window": "1d"})) == fresh + recent + old
    assert event_ids(client.get(URL)) == fresh + recent + old
    assert event_ids(client.get(URL, {"window": "5m", "kind": "alarm"})) == []
    assert event_ids(client.get(URL, {"window": "1d", "before": fresh[0]})) == recent + old


def test_an_empty_time_window_bounds_the_walk(login, viewer, org, other_org):
    """Without events in the window the query stops at once, whatever lies below it."""
    make_events(org, 5, received_at=timezone.now() - timedelta(hours=3))
    make_events(other_org, 5)  # recent, but another organization's
    client = login(viewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"window": "1h"})
    assert (
        event_ids(response) == [] and "No events match these filters" in response.content.decode()
    )
    events_sql = next(q["sql"] for q in queries if 'FROM "devices_deviceevent"' in q["sql"])
    assert re.search(r'"devices_deviceevent"\."id" >= \(SELECT', events_sql)


def test_another_organizations_gateway_as_filter_is_ignored(login, viewer, world):
    response = login(viewer).get(URL, {"gateway": world["spy_gateway"].pk})
    body = response.content.decode()
    assert response.status_code == 200
    assert world["ids"]["spy"] not in event_ids(response)
    assert "SPY-MARK" not in body and "Spy gateway" not in body
    assert len(event_ids(response)) == 3  # unfiltered: the foreign id narrows nothing


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "<script>alert(1)</script>"},
        {"kind": "x" * 500},
        {"gateway": "abc"},
        {"gateway": "99999999999999999999999999"},
        {"gateway": "-1"},
        {"serial": "x" * 5000},
        {"serial": "\x00"},
        {"window": "1y"},
        {"per_page": "7"},
        {"per_page": "lots"},
        {"before": "abc"},
        {"before": "-5"},
        {"before": "0"},
        {"before": "99999999999999999999999999"},
        {"before": "1e5"},
    ],
)
def test_bad_filter_values_are_ignored(login, viewer, world, params):
    client = login(viewer)
    response = client.get(URL, params)
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()
    assert client.get(URL, params, **RESULTS).status_code == 200
    if "serial" not in params:
        assert len(event_ids(response)) == 3


def test_chips_drop_one_filter_and_go_back_to_the_newest_page(login, viewer, world):
    params = {"kind": "alarm", "gateway": world["north"].pk, "before": 10**9}
    body = login(viewer).get(URL, params).content.decode()
    assert f'href="{URL}?gateway={world["north"].pk}" data-events-clear="kind"' in body
    assert f'href="{URL}?kind=alarm" data-events-clear="gateway"' in body


# --- keyset pages ---------------------------------------------------------------------


def test_older_pages_have_no_duplicates_or_gaps(login, viewer, org, other_org):
    ids = make_events(org, 60)
    make_events(other_org, 30)  # interleaved ids of another organization never show
    ids = sorted(set(ids) | set(make_events(org, 7)), reverse=True)
    client = login(viewer)
    seen, url, pages = [], URL, 0
    while url:
        response = client.get(url, **RESULTS)
        page = event_ids(response)
        assert 0 < len(page) <= 25
        seen += page
        url, pages = older_url(response), pages + 1
        assert pages < 10
    assert seen == ids and pages == 3
    assert "No older events" in client.get(URL, {"before": ids[-1]}).content.decode()


def test_older_link_keeps_the_filters(login, viewer, org):
    gateway = make_gateway(org, name="Main")
    alarms = make_events(org, 30, kind="alarm", gateway=gateway)
    make_events(org, 30, kind="log", gateway=gateway)
    client = login(viewer)
    first = client.get(URL, {"kind": "alarm", "per_page": 25})
    url = older_url(first)
    assert url == f"{URL}?kind=alarm&before={alarms[24]}"
    second = client.get(url)
    assert event_ids(first) + event_ids(second) == alarms
    assert older_url(second) is None and f'href="{URL}?kind=alarm"' in second.content.decode()


def test_pages_are_keyset_queries_without_offset_or_count(login, viewer, org):
    make_events(org, 30)
    client = login(viewer)
    with CaptureQueriesContext(connection) as queries:
        client.get(URL, {"before": 10**9, "kind": "telemetry"})
    sql = [q["sql"].upper() for q in queries if "DEVICES_DEVICEEVENT" in q["sql"].upper()]
    assert len(sql) == 1
    assert "OFFSET" not in sql[0] and "COUNT(" not in sql[0] and "LIMIT 26" in sql[0]


def test_queries_do_not_grow_with_the_page(login, viewer, org):
    sensor = make_device_type("Sensor")
    gateways = [make_gateway(org, name=f"GW {i}") for i in range(3)]
    for i in range(5):
        device = make_device(org, sensor, serial_number=f"S-{i}", gateway=gateways[i % 3])
        make_events(org, 45, device=device, gateway=gateways[i % 3])
    make_events(org, 20)  # no device, no gateway
    client = login(viewer)
    counts = {}
    for per_page in (25, 200):
        for params in ({"per_page": per_page}, {"per_page": per_page, "serial": "s-"}):
            with CaptureQueriesContext(connection) as queries:
                response = client.get(URL, params, **HTMX)
            assert len(event_ids(response)) == per_page
            # The filter's gateways, the serial search's devices and one page of events
            # with their device and gateway; the rest are the session, user and
            # membership lookups of every view.
            tables = [re.search(r'FROM "(\w+)"', q["sql"]).group(1) for q in queries]
            expected = ["devices_gateway", "devices_deviceevent"]
            if "serial" in params:
                expected.insert(1, "devices_device")
            assert [t for t in tables if t.startswith("devices_")] == expected
            counts[(per_page, "serial" in params)] = len(queries)
    assert counts[(25, False)] == counts[(200, False)]
    assert counts[(25, True)] == counts[(200, True)]


# --- the events-per-second feed -------------------------------------------------------


@pytest.fixture
def frozen_now(monkeypatch):
    """A fixed "now" half-way through a second, so buckets never straddle a tick."""
    now = datetime.fromtimestamp(int(timezone.now().timestamp()) + 0.5, tz=UTC)
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)
    return now


def test_rate_buckets_per_second(login, viewer, org, other_org, frozen_now):
    second = timedelta(seconds=1)
    current = frozen_now.replace(microsecond=0)
    make_events(org, 4, received_at=current)  # the running second
    make_events(org, 3, received_at=current - second + timedelta(milliseconds=999))
    make_events(org, 2, received_at=current - 10 * second + timedelta(milliseconds=1))
    make_events(org, 5, received_at=current - 119 * second)  # the oldest bucket
    make_events(org, 6, received_at=current - 120 * second)  # just outside
    make_events(org, 9, received_at=current + second)  # a clock ahead: not yet
    make_events(other_org, 50, received_at=current)  # another organization's
    client = login(viewer)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(RATE_URL)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    data = response.json()
    first = int(current.timestamp()) - RATE_SECONDS + 1
    assert data["seconds"] == RATE_SECONDS == len(data["counts"]) == 120
    assert data["start"] == first * 1000 and data["now"] == int(frozen_now.timestamp() * 1000)
    expected = [0] * 120
    expected[119], expected[118], expected[109], expected[0] = 4, 3, 2, 5
    assert data["counts"] == expected
    sql = [q["sql"] for q in queries if "devices_deviceevent" in q["sql"]]
    assert len(sql) == 1 and "GROUP BY" in sql[0].upper()


def test_rate_with_no_events_is_all_zeros(login, viewer, frozen_now):
    data = login(viewer).get(RATE_URL).json()
    assert data["counts"] == [0] * RATE_SECONDS


def test_rate_of_events_written_by_the_bridge(login, viewer, org, frozen_now):
    """The bridge stamps one received_at per batch; each batch lands in its second."""
    gateway = make_gateway(org)
    current = frozen_now.replace(microsecond=0)
    for age, size in ((3, 250), (2, 1000), (0, 40)):
        make_events(org, size, gateway=gateway, received_at=current - timedelta(seconds=age))
    counts = login(viewer).get(RATE_URL).json()["counts"]
    assert counts[-4:] == [250, 1000, 0, 40] and sum(counts) == 1290
