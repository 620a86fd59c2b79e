"""Issue 9, points 2–6 without a browser: the layout rule, the header's links, relative
times, refusals with their reason, the device page's edit and timeline, rows kept in
view, failure reasons, header counts and the error pages."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.views.defaults import server_error

from devices.choices import DeviceState
from devices.models import BulkOperation, DeviceEvent, Operation, OperationState
from portal import navigation, permissions, widgets
from portal.choices import Role
from portal.models import AuditEntry
from portal.templatetags.fleetgate import ago, relative
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_member,
    make_organization,
)

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/"}
RESULTS = {**HTMX, "HTTP_HX_TARGET": "devices-results"}


@pytest.fixture
def org():
    return make_organization("Screens Co")


@pytest.fixture
def manager(org):
    return make_member(org, [Role.DEVICE_MANAGER])


@pytest.fixture
def viewer(org):
    return make_member(org, [])


# --- the layout rule --------------------------------------------------------------


def w(key, size):
    return widgets.Widget(key, key.title(), "dashboard", size=size)


def stretched(cards):
    return [card["widget"].key for card in cards if card["stretched"]]


def test_a_half_widget_without_a_half_neighbour_takes_the_row():
    every = [w("a", "wide"), w("b", "half"), w("c", "half"), w("d", "half"), w("e", "wide")]
    cards = widgets.arrange(every, {})
    assert [c["widget"].key for c in cards] == ["a", "b", "c", "d", "e"]
    assert stretched(cards) == ["d"]  # b and c share a row; d is alone before e
    moved = widgets.arrange(every, {"order": ["b", "a", "c", "d", "e"], "collapsed": ["c"]})
    assert [c["widget"].key for c in moved] == ["b", "a", "c", "d", "e"]
    assert stretched(moved) == ["b"] and [c["collapsed"] for c in moved][2] is True


def test_a_widget_is_wide_unless_it_says_otherwise():
    assert widgets.Widget("x", "X", "dashboard").size == widgets.WIDE
    with pytest.raises(ValueError):
        widgets.register(widgets.Widget("x", "X", "dashboard", size="third"))


@pytest.mark.django_db
def test_the_layout_is_the_users_own(client, login, org, manager, viewer):
    login(manager).post(
        reverse("dashboard-layout"),
        {"order": ["events", "devices"], "collapsed": ["groups"]},
        content_type="application/json",
    )
    mine = login(manager).get(reverse("dashboard")).content.decode()
    theirs = login(viewer).get(reverse("dashboard")).content.decode()
    assert mine.index('id="widget-events"') < mine.index('id="widget-devices"')
    assert 'is-collapsed" id="widget-groups"' in mine
    assert theirs.index('id="widget-devices"') < theirs.index('id="widget-events"')
    assert 'is-collapsed" id="widget-groups"' not in theirs


# --- the header ------------------------------------------------------------------------


def test_the_header_links_every_area_and_marks_the_current_one():
    links = navigation.links(frozenset({Role.DEVICE_MANAGER.value}), "/devices/operations/7/")
    labels = [link["label"] for link in links]
    for area in ("Dashboard", "Devices", "Enrollment", "Operations", "Gateways", "Events"):
        assert area in labels
    assert {"Licenses", "Members", "API docs"} <= set(labels)
    assert [link["label"] for link in links if link["current"]] == ["Operations"]
    members = next(link for link in links if link["key"] == "members")
    assert (members["allowed"], members["reason"]) == (False, "needs Administrator")


def test_a_link_whose_page_does_not_exist_yet_is_left_out(monkeypatch):
    later = navigation.NavItem("later", "Later", "nowhere:yet", order=1)
    monkeypatch.setitem(navigation._registry, "later", later)
    links = {link["key"]: link for link in navigation.links(frozenset(), "/")}
    assert "later" not in links
    assert links["audit"]["url"] == reverse("audit:log")
    assert links["audit"]["reason"] == "needs Administrator"  # shown, refused, with why


# --- refusals say why ----------------------------------------------------------------


def test_every_rule_says_what_it_needs():
    assert set(permissions.NEEDS) == set(permissions.RULES)
    refused = permissions.decide("enroll", {Role.DEVICE_MANAGER.value})
    assert not refused
    assert refused.reason == "needs Administrator, or Device Manager and IoT Manager"
    both = permissions.decide("enroll", {Role.DEVICE_MANAGER.value, Role.IOT_MANAGER.value})
    assert both and both.reason == ""
    assert permissions.refusals(frozenset())["manage_members"] == "needs Administrator"


@pytest.mark.django_db
def test_a_refused_page_says_what_it_needs(login, org, viewer):
    device = make_device(org)
    response = login(viewer).get(reverse("devices:edit", args=[device.pk]))
    assert response.status_code == 403
    body = response.content.decode()
    assert "needs Administrator or Device Manager" in body and 'class="topbar"' in body
    assert reverse("dashboard") in body


# --- relative times --------------------------------------------------------------------


def test_relative_times_read_like_a_person_says_them():
    now = datetime(2026, 5, 6, 12, 0, 0, tzinfo=UTC)
    cases = {
        timedelta(seconds=2): "just now",
        timedelta(seconds=12): "12 s ago",
        timedelta(minutes=5, seconds=30): "5 min ago",
        timedelta(hours=3): "3 h ago",
        timedelta(days=1, hours=2): "1 day ago",
        timedelta(days=9): "9 days ago",
        timedelta(days=-2): "in 2 days",
        timedelta(days=45): "2026-03-22",
    }
    for before, words in cases.items():
        assert relative(now - before, now) == words


def test_a_time_carries_the_exact_moment_for_hover_and_script():
    moment = timezone.now() - timedelta(seconds=30)
    html = ago(moment)
    assert html.startswith(f'<time datetime="{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"')
    assert f'title="{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"' in html
    assert "data-relative" in html and "s ago</time>" in html
    assert ago(None, "Never") == '<span class="muted">Never</span>'


# --- the device page -----------------------------------------------------------------


@pytest.mark.django_db
def test_editing_name_and_location_is_validated_and_audited(login, org, manager):
    device = make_device(org, name="Old", location="Somewhere")
    client = login(manager)
    url = reverse("devices:edit", args=[device.pk])
    form = client.get(url, **HTMX).content.decode()
    assert 'value="Old"' in form and f"Edit {device.serial_number}" in form
    bad = client.post(url, {"name": "Bell\x07", "location": "x"}, **HTMX)
    assert "printable characters only" in bad.content.decode()
    assert not AuditEntry.objects.filter(action="device.edit").exists()
    saved = client.post(url, {"name": "  Lobby   bell ", "location": "Hall"}, **HTMX)
    assert saved.status_code == 204 and "groupsChanged" in saved["HX-Trigger"]
    device.refresh_from_db()
    assert (device.name, device.location) == ("Lobby bell", "Hall")
    entry = AuditEntry.objects.get(action="device.edit")
    assert entry.object_ids == [device.pk] and entry.user == manager
    assert entry.detail["changes"] == {
        "name": {"from": "Old", "to": "Lobby bell"},
        "location": {"from": "Somewhere", "to": "Hall"},
    }
    long = client.post(url, {"name": "n" * 121, "location": ""}, **HTMX)
    assert "at most 120 characters" in long.content.decode()


@pytest.mark.django_db
def test_the_device_page_shows_its_timeline_and_every_action(login, org, manager):
    gateway = make_gateway(org, is_online=True)
    device = make_device(org, gateway=gateway, state=DeviceState.FAILED)
    failed_bulk(org, manager, [device], "no answer from the device")
    DeviceEvent.objects.create(
        organization=org,
        device=device,
        gateway=gateway,
        kind="alarm",
        message="tamper switch",
        occurred_at=timezone.now(),
    )
    body = login(manager).get(reverse("devices:detail", args=[device.pk])).content.decode()
    assert 'class="message error device-failure"' in body and "no answer from the device" in body
    timeline = body[body.index('id="device-timeline"') : body.index('id="device-details"')]
    assert timeline.index("tamper switch") < timeline.index("no answer from the device")
    for label in ("Provision…", "Deprovision…", "Reprovision…", "Edit name and location…"):
        assert f">{label}</button>" in body
    assert "Delete (unenroll)…: needs Administrator, or Device Manager and IoT Manager." in body
    assert 'id="device-photo"' in body and "No photo." in body  # enrollment's panel
    assert 'data-live-url="/ws/live/"' in body and f'id="device-{device.pk}"' in body


# --- failures and counts --------------------------------------------------------------


def failed_bulk(org, user, devices, error, done=0):
    now = timezone.now()
    bulk = BulkOperation.objects.create(
        organization=org,
        kind="provision",
        target="test",
        created_by=user,
        total=len(devices),
        failed=len(devices) - done,
        done=done,
        finished_at=now,
    )
    Operation.objects.bulk_create(
        Operation(
            organization=org,
            bulk=bulk,
            device=device,
            gateway=device.gateway,
            kind="provision",
            state=OperationState.DONE if n < done else OperationState.FAILED,
            from_state=DeviceState.DISCOVERED,
            next_attempt_at=now,
            expires_at=now,
            error="" if n < done else error,
            finished_at=now,
        )
        for n, device in enumerate(devices)
    )
    return bulk


@pytest.mark.django_db
def test_the_operations_widget_names_the_most_frequent_failure_in_constant_queries(
    login, org, manager
):
    kind = make_device_type()
    client = login(manager)
    url = reverse("devices:operations-widget")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            client.get(url, **HTMX)
        return len(captured)

    devices = [make_device(org, kind, state=DeviceState.FAILED) for _ in range(3)]
    failed_bulk(org, manager, devices, "wrong key")
    few = queries()
    for n in range(6):
        failed_bulk(org, manager, devices, f"reason {n}", done=1)
    assert queries() == few
    body = client.get(url, **HTMX).content.decode()
    assert body.count('class="bulk-reason small"') == 7  # each says why it failed
    assert 'title="7 bulk operations, 0 running">7</span>' in body
    assert "failure: </span>reason 5</p>" in body and "failure: </span>wrong key</p>" in body


@pytest.mark.django_db
def test_failed_devices_show_their_reason_in_the_list(login, org, manager):
    kind = make_device_type()
    failed, fine = make_device(org, kind, state=DeviceState.FAILED), make_device(org, kind)
    failed_bulk(org, manager, [failed], "the device did not answer")
    body = login(manager).get("/devices/", **HTMX).content.decode()
    row = body[body.index(f'id="device-{failed.pk}"') :]
    assert '<span class="failure-reason" title="the device did not answer">' in row
    assert body.count("failure-reason") == 1 and f'id="device-{fine.pk}"' in body


@pytest.mark.django_db
def test_header_counts_say_what_they_count(login, org, manager):
    client = login(manager)
    enrollment = client.get(reverse("enrollment:widget"), **HTMX).content.decode()
    assert 'title="0 enrollment records, 0 waiting or in progress">0</span>' in enrollment


# --- rows kept in view ------------------------------------------------------------------


@pytest.mark.django_db
def test_rows_acted_on_stay_in_view_when_they_stop_matching(login, org, manager):
    kind = make_device_type()
    acted = [make_device(org, kind, state=DeviceState.PROVISIONING) for _ in range(2)]
    still = make_device(org, kind, state=DeviceState.DISCOVERED)
    client = login(manager)
    keep = {"HTTP_X_KEEP_DEVICES": f"{acted[0].pk},{acted[1].pk},{still.pk},x,99999999"}
    body = client.get("/devices/", {"state": "discovered"}, **RESULTS, **keep).content.decode()
    assert body.count('class="is-kept"') == 2 and "no longer matches the filter" in body
    assert body.count(f'id="device-{still.pk}"') == 1  # it matches: shown once, not kept
    unfiltered = client.get("/devices/", **RESULTS, **keep).content.decode()
    assert "is-kept" not in unfiltered  # nothing is filtered out, so nothing is kept
    response = client.get("/devices/", {"state": "discovered"}, **RESULTS)
    assert "is-kept" not in response.content.decode()
    assert "X-Keep-Devices" in response["Vary"]


@pytest.mark.django_db
def test_kept_rows_cost_two_queries_and_never_cross_organizations(login, org, manager):
    kind = make_device_type()
    mine = make_device(org, kind, state=DeviceState.PROVISIONING)
    foreign = make_device(make_organization("Elsewhere"), kind, state=DeviceState.PROVISIONING)
    make_device(org, kind)
    client = login(manager)
    with CaptureQueriesContext(connection) as plain:
        client.get("/devices/", {"state": "discovered"}, **RESULTS)
    keep = {"HTTP_X_KEEP_DEVICES": f"{mine.pk},{foreign.pk}"}
    with CaptureQueriesContext(connection) as kept:
        body = client.get("/devices/", {"state": "discovered"}, **RESULTS, **keep)
    assert len(kept) - len(plain) == 2  # the kept rows, and their groups
    assert f'id="device-{mine.pk}"' in body.content.decode()
    assert f'id="device-{foreign.pk}"' not in body.content.decode()


# --- error pages ---------------------------------------------------------------------


def test_the_500_page_needs_no_database_and_no_user():
    """Rendered with nothing: no request context, no session, no database (this test
    has no database access at all, so any query would fail it)."""
    response = server_error(RequestFactory().get("/"))
    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body and 'class="topbar"' in body
    assert 'href="/"' in body and "Log out" not in body


@pytest.mark.django_db
def test_the_404_page_offers_a_way_back(login, org, viewer):
    response = login(viewer).get("/devices/987654/")
    body = response.content.decode()
    assert response.status_code == 404
    assert "belongs to another organization" in body and "Back to the dashboard" in body
    assert 'aria-label="Main"' in body  # the portal's own layout, links and all
