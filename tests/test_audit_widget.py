"""The Audit log widget and its export: who may see them, the filters, the pages at a
constant number of queries, the start of a bulk operation shown with how it finished."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices.models import BulkOperation, Operation
from portal import audit
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_devices,
    make_gateway,
    make_member,
    make_organization,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    return make_organization(slug="acme")


@pytest.fixture
def admin(org):
    return make_member(org, [Role.ADMINISTRATOR], username="ana")


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def page(client, **params):
    response = client.get(reverse("audit:log"), params)
    assert response.status_code == 200
    return response


def seqs(response):
    return [entry.seq for entry in response.context["entries"]]


def export_rows(response):
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    body = response.getvalue().decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:], newline="")))


# -- who ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        ([Role.ADMINISTRATOR], True),
        ([Role.DEVICE_MANAGER, Role.IOT_MANAGER], False),
        ([Role.DEVICE_MANAGER], False),
        ([Role.IOT_MANAGER], False),
        ([], False),
    ],
)
def test_administrators_only(client, org, roles, allowed):
    client.force_login(make_member(org, roles))
    for name in ("audit:log", "audit:export"):
        assert client.get(reverse(name)).status_code == (200 if allowed else 403)
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert ('id="widget-audit"' in dashboard) is allowed
    assert (f'href="{reverse("audit:log")}"' in dashboard) is allowed  # the header link


def test_the_dashboard_loads_the_widget_and_the_results_swap_alone(admin_client, org, admin):
    audit.record(org, admin, "group.create", [1], name="Lobby")
    widget = admin_client.get(reverse("audit:log"), HTTP_HX_REQUEST="true")
    assert [t.name for t in widget.templates][0] == "portal/_audit_widget.html"
    results = admin_client.get(
        reverse("audit:log"), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="audit-results"
    )
    assert [t.name for t in results.templates][0] == "portal/_audit_results.html"
    assert "group.create" in results.content.decode() and "Lobby" in results.content.decode()


def test_another_organization_s_log_stays_out_of_sight(admin_client, org, admin):
    other = make_organization(slug="globex")
    spy = make_member(other, [Role.ADMINISTRATOR], username="spy")
    audit.record(other, spy, "group.create", [1], name="GLOBEX-SECRET")
    audit.record(org, admin, "group.create", [1], name="Lobby")
    body = page(admin_client).content.decode()
    assert "GLOBEX-SECRET" not in body and "spy" not in body
    assert page(admin_client, user="spy").context["filter"].actor == ""  # not a choice here
    rows = export_rows(admin_client.get(reverse("audit:export")))
    assert [r["organization"] for r in rows] == [str(org.pk)]


# -- filters --------------------------------------------------------------------------------


def test_filter_by_user_system_and_action(admin_client, org, admin):
    bob = make_member(org, [Role.DEVICE_MANAGER], username="bob")
    audit.record(org, admin, "group.create", [1])
    audit.record(org, bob, "device.provision", [2], object_type="device")
    audit.record(org, None, "device.unenrolled", [3], object_type="device")
    audit.record(org, bob, "group.create", [4])
    context = page(admin_client).context
    assert context["actors"] == ["ana", "bob"]
    assert context["actions"] == ["device.provision", "device.unenrolled", "group.create"]
    assert seqs(page(admin_client, user="bob")) == [4, 2]
    assert seqs(page(admin_client, user="(system)")) == [3]
    assert seqs(page(admin_client, action="group.create")) == [4, 1]
    assert seqs(page(admin_client, user="bob", action="group.create")) == [4]
    filtered = page(admin_client, user="bob", action="group.create")
    assert [c["label"] for c in filtered.context["filter"].chips] == ["User", "Action"]
    # Names that are not in the log narrow nothing and break nothing.
    assert seqs(page(admin_client, user="mallory", action="drop table")) == [4, 3, 2, 1]


def test_filter_by_device_finds_its_entries_and_its_bulk_operations(admin_client, org, admin):
    """A device's entries: those listing it, and those of every bulk operation it took
    part in — also when a large action's sample of ids left it out."""
    gateway = make_gateway(org)
    device = make_device(org, gateway=gateway, serial_number="PMP-0042")
    others = make_devices(org, audit.MAX_IDS, gateway=gateway)
    audit.record(org, admin, "device.delete", [device], target="one")  # 1: lists it
    bulk = BulkOperation.objects.create(organization=org, kind="provision", target="all", total=2)
    Operation.objects.create(
        organization=org,
        bulk=bulk,
        device=device,
        gateway=gateway,
        kind="provision",
        from_state="discovered",
        next_attempt_at=timezone.now(),
        expires_at=timezone.now() + timedelta(days=1),
    )
    # 2: a large action whose sample of ids does not hold the device
    audit.record(org, admin, "device.provision", [*others, device], bulk=bulk.pk)
    assert device.pk not in AuditEntry.objects.get(seq=2).object_ids
    audit.record(org, admin, "device.provision", others[:5])  # 3: not about it
    audit.bulks_finished([bulk])  # 4: the closing of 2
    assert seqs(page(admin_client, device="pmp-0042")) == [4, 2, 1]
    unknown = page(admin_client, device="NOPE-1")
    assert seqs(unknown) == [] and "No device with the serial number “NOPE-1”" in (
        unknown.content.decode()
    )


def test_filter_by_days(admin_client, org, admin):
    for n in range(3):
        audit.record(org, admin, "group.create", [n])
    day = timezone.now() - timedelta(days=3)
    AuditEntry.objects.filter(seq=1).update(created_at=day)
    AuditEntry.objects.filter(seq=2).update(created_at=day + timedelta(days=1))
    today = timezone.localdate()
    first = day.date().isoformat()
    assert seqs(page(admin_client, since=today.isoformat())) == [3]
    assert seqs(page(admin_client, until=first)) == [1]
    second = (day + timedelta(days=1)).date().isoformat()
    assert seqs(page(admin_client, since=first, until=second)) == [2, 1]
    assert seqs(page(admin_client, since="not a date")) == [3, 2, 1]
    assert seqs(page(admin_client, since="0001-01-01", until="9999-12-31")) == [3, 2, 1]


# -- pages ------------------------------------------------------------------------------------


def test_pages_go_down_the_chain(admin_client, org, admin):
    for n in range(30):
        audit.record(org, admin, "group.create", [n])
    first = page(admin_client)
    assert seqs(first) == list(range(30, 5, -1))
    assert first.context["older_url"] == "/audit/?before=6"
    second = admin_client.get(first.context["older_url"])
    assert seqs(second) == [5, 4, 3, 2, 1] and second.context["older_url"] == ""
    assert second.context["newest_url"] == "/audit/"
    assert seqs(page(admin_client, per_page=50)) == list(range(30, 0, -1))
    assert seqs(page(admin_client, per_page=7, before=-3)) == list(range(30, 5, -1))


def test_a_page_costs_the_same_queries_at_25_and_200_rows(client, org, admin):
    """Middleware (session, user, memberships), the users and actions to choose from, the
    rows, the closing entries of the page's bulk operations, the chain head."""
    bob = make_member(org, [Role.DEVICE_MANAGER], username="bob")
    for n in range(1, 301):
        user = admin if n % 2 else bob
        audit.record(org, user, "device.provision", [n], object_type="device", bulk=n)
        if n % 3 == 0:
            closed = BulkOperation(
                pk=n, organization_id=org.pk, kind="provision", total=1, failed=1
            )
            audit.bulks_finished([closed])
    client.force_login(admin)
    counts = {}
    for per_page in (25, 200):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse("audit:log"), {"per_page": per_page})
        assert len(response.context["entries"]) == per_page
        counts[per_page] = [q["sql"] for q in queries.captured_queries]
    assert len(counts[25]) == len(counts[200]) == 8, counts


# -- a bulk operation, started and finished ----------------------------------------------------


def test_a_started_bulk_operation_shows_how_it_finished(admin_client, org, admin):
    started = audit.record(org, admin, "device.provision", [1, 2, 3], object_type="device", bulk=77)
    running = audit.record(org, admin, "device.provision", [4], object_type="device", bulk=78)
    audit.bulks_finished(
        [BulkOperation(pk=77, organization_id=org.pk, kind="provision", total=3, failed=3)]
    )
    response = page(admin_client)
    entries = {e.seq: e for e in response.context["entries"]}
    assert entries[started.seq].closing.outcome == AuditOutcome.FAILURE
    assert entries[running.seq].closing is None
    body = response.content.decode()
    assert "0 done · 3 failed" in body and "not finished yet" in body
    assert f"closes entry {started.seq}" in body


# -- the export ---------------------------------------------------------------------------------


def test_the_export_follows_the_filters_oldest_first_and_is_recorded(admin_client, org, admin):
    bob = make_member(org, [Role.DEVICE_MANAGER], username="bob")
    for n in range(5):
        audit.record(org, bob if n % 2 else admin, "group.create", [n])
    response = admin_client.get(reverse("audit:export"), {"user": "bob", "before": 2})
    rows = export_rows(response)
    assert [r["seq"] for r in rows] == ["2", "4"]  # "before" is the page's, not the export's
    assert list(rows[0]) == [
        "organization",
        "seq",
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_ids",
        "object_count",
        "outcome",
        "bulk",
        "detail",
        "prev_hash",
        "hash",
    ]
    stored = AuditEntry.objects.get(seq=2)
    assert rows[0]["hash"] == stored.hash and rows[0]["prev_hash"] == stored.prev_hash
    exported = AuditEntry.objects.get(action="audit.export")
    assert exported.actor == "ana" and exported.seq == 6
    assert exported.detail == {"filters": {"user": "bob"}, "through": 5}


def test_the_export_link_carries_the_filters(admin_client, org, admin):
    audit.record(org, admin, "group.create", [1])
    response = page(admin_client, user="ana", per_page=50, before=9)
    assert response.context["export_url"] == "/audit/export.csv?user=ana"
