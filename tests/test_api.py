"""The REST API: devices, groups, gateways, operations, licenses, auth, schema and docs."""

import io
import re
from datetime import timedelta

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from devices import operations
from devices.choices import DeviceState as S
from devices.forms import MAX_SELECTION
from devices.ingest import GatewayRef
from devices.models import BulkOperation, Device, Operation
from licensing import signing
from licensing.keys import DEMO_PRIVATE_KEY
from licensing.models import License
from portal.choices import Role
from portal.models import AuditEntry
from tests.factories import (
    PASSWORD,
    api_client,
    make_device,
    make_device_type,
    make_devices,
    make_gateway,
    make_group,
    make_license,
    make_member,
    make_membership,
    make_organization,
)

pytestmark = pytest.mark.django_db

DEVICES = reverse("api:device-list")
ACTIONS = reverse("api:device-actions")
GROUPS = reverse("api:group-list")
GATEWAYS = reverse("api:gateway-list")
OPERATIONS = reverse("api:operation-list")
LICENSES = reverse("api:license-list")


@pytest.fixture
def org():
    return make_organization(name="Acme", slug="acme")


@pytest.fixture
def online(org):
    return make_gateway(org, name="Roof gateway", is_online=True, secret="s" * 32)


@pytest.fixture
def manager(org):
    return api_client(make_member(org, [Role.DEVICE_MANAGER]))


@pytest.fixture
def admin(org):
    return api_client(make_member(org, [Role.ADMINISTRATOR]))


@pytest.fixture
def viewer(org):
    return api_client(make_member(org))


def fleet(org, gateway, n, state=S.DISCOVERED, **fields):
    return [make_device(org, gateway=gateway, state=state, **fields) for _ in range(n)]


def fail_all(org, gateway, reason="wrong key"):
    """Send what is queued for ``gateway`` and have the gateway refuse every one."""
    claimed = operations.claim_for_dispatch(gateway.id)
    ref = GatewayRef(gateway.id, gateway.uid, org.id, gateway.secret)
    results = [
        {"op": operations.wire_id(c["uid"], c["generation"]), "ok": False, "code": "rejected"}
        | {"reason": reason}
        for c in claimed
    ]
    operations.complete([(ref, results)], timezone.now())


# -- devices: list, filters, detail --------------------------------------------------


def test_list_shows_the_organizations_devices_with_type_gateway_and_groups(org, online, viewer):
    device = make_device(org, gateway=online, serial_number="SN-1", name="Lamp")
    group = make_group(org, "Floor 1")
    device.groups.add(group)
    make_device(make_organization(), serial_number="SN-THEIRS")
    response = viewer.get(DEVICES)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["serial_number"] == "SN-1" and row["name"] == "Lamp"
    assert row["state"] == "discovered" and row["state_label"] == "Discovered"
    assert row["gateway"] == {"id": online.pk, "name": "Roof gateway", "is_online": True}
    assert row["groups"] == [{"id": group.pk, "name": "Floor 1"}]
    assert set(row["actions"]) == {"provision", "reprovision"}
    assert "secret" not in response.content.decode() and "s" * 32 not in response.content.decode()


def test_filters_narrow_the_list(org, online, viewer):
    lamp_type = make_device_type("Lamp")
    other_gateway = make_gateway(org, name="Basement")
    group = make_group(org, "Floor 2")
    a = make_device(org, lamp_type, serial_number="A-100", gateway=online)
    b = make_device(org, serial_number="B-200", gateway=other_gateway, state=S.PROVISIONED)
    c = make_device(org, lamp_type, serial_number="C-300", name="kitchen", gateway=online)
    c.groups.add(group)

    def serials(**params):
        response = viewer.get(DEVICES, params)
        assert response.status_code == 200, response.json()
        return [row["serial_number"] for row in response.json()["results"]]

    assert serials() == ["A-100", "B-200", "C-300"]
    assert serials(state="provisioned") == ["B-200"]
    assert serials(type=lamp_type.pk) == ["A-100", "C-300"]
    assert serials(gateway=other_gateway.pk) == ["B-200"]
    assert serials(group=group.pk) == ["C-300"]
    assert serials(q="kitch") == ["C-300"]
    assert serials(q="200") == ["B-200"]
    assert serials(sort="-serial") == ["C-300", "B-200", "A-100"]
    assert serials(type=lamp_type.pk, sort="-serial") == ["C-300", "A-100"]
    assert {a.pk, b.pk, c.pk} == set(Device.objects.values_list("pk", flat=True))


def test_bad_filters_are_field_errors_and_other_organizations_ids_are_unknown(org, viewer):
    theirs = make_organization()
    response = viewer.get(
        DEVICES,
        {
            "state": "melted",
            "gateway": make_gateway(theirs).pk,
            "group": make_group(theirs).pk,
            "sort": "colour",
            "q": "x" * 101,
        },
    )
    assert response.status_code == 400
    assert set(response.json()) == {"state", "sort", "q"}  # checked before any lookup
    response = viewer.get(
        DEVICES, {"gateway": make_gateway(theirs).pk, "group": make_group(theirs).pk}
    )
    assert response.status_code == 400
    assert response.json() == {
        "gateway": ["No such gateway in this organization."],
        "group": ["No such group in this organization."],
    }
    assert viewer.get(DEVICES, {"type": 999999}).json() == {"type": ["No such device type."]}
    assert viewer.get(DEVICES, {"gateway": "abc"}).status_code == 400


def test_pages(org, viewer):
    make_devices(org, 7)
    first = viewer.get(DEVICES, {"page_size": 5}).json()
    assert first["count"] == 7 and len(first["results"]) == 5 and first["next"]
    second = viewer.get(first["next"]).json()
    assert len(second["results"]) == 2 and second["next"] is None
    assert viewer.get(DEVICES, {"page": 9}).status_code == 404


@pytest.mark.parametrize(
    "url",
    [DEVICES, GROUPS, GATEWAYS, OPERATIONS, LICENSES],
    ids=["devices", "groups", "gateways", "operations", "licenses"],
)
def test_list_queries_do_not_grow_with_the_rows(org, online, viewer, url):
    groups = [make_group(org) for _ in range(3)]

    def grow(n):
        devices = make_devices(org, n, gateway=online)
        for device in devices:
            device.groups.add(*groups)
        for _ in range(n // 5):
            make_gateway(org)
            make_group(org)
            make_license(org, seats=1)
            BulkOperation.objects.create(organization=org, kind="provision", target="t", total=1)

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(url, {"page_size": 100}).status_code == 200
        return len(queries)

    grow(5)
    small = count()
    grow(45)
    assert count() == small


def test_device_list_on_a_deep_page_and_with_filters_costs_the_same(org, online, viewer):
    devices = make_devices(org, 60, gateway=online)
    group = make_group(org)
    group.devices.add(*devices[:30])

    def count(params):
        with CaptureQueriesContext(connection) as queries:
            assert viewer.get(DEVICES, params).status_code == 200
        return len(queries)

    plain = count({})
    assert count({"page": 2, "page_size": 20}) == plain
    # each filter by id costs one lookup (is it in this organization?), never per row
    assert count({"gateway": online.pk, "group": group.pk}) == plain + 2


def test_detail_has_recent_operations_and_other_organizations_devices_are_404(org, online, manager):
    make_license(org, seats=5)
    device = make_device(org, gateway=online)
    manager.post(ACTIONS, {"action": "provision", "devices": [device.pk]})
    response = manager.get(reverse("api:device-detail", args=[device.pk]))
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "provisioning"
    [op] = body["recent_operations"]
    assert op["kind"] == "provision" and op["state"] == "queued" and op["device"] == device.pk
    theirs = make_device(make_organization())
    assert manager.get(reverse("api:device-detail", args=[theirs.pk])).status_code == 404
    assert manager.get("/api/v1/devices/nope/").status_code == 404


# -- device actions ------------------------------------------------------------------


def test_an_action_starts_a_bulk_operation_and_returns_it_with_skipped_reasons(
    org, online, manager
):
    make_license(org, seats=5)
    fresh = fleet(org, online, 3)
    done = make_device(org, gateway=online, state=S.PROVISIONED)
    stranger = make_device(make_organization(), serial_number="SN-STRANGER")
    ids = [d.pk for d in fresh] + [done.pk, stranger.pk, 99999999]
    response = manager.post(ACTIONS, {"action": "provision", "devices": ids})
    assert response.status_code == 202, response.json()
    body = response.json()
    bulk = BulkOperation.objects.get()
    assert response["Location"] == reverse("api:operation-detail", args=[bulk.pk])
    assert body["id"] == bulk.pk and body["kind"] == "provision" and body["total"] == 3
    assert body["running"] is True and body["target"] == "6 selected devices"
    reasons = {s["id"]: s["reason"] for s in body["skipped"]}
    assert reasons == {
        done.pk: "A device that is provisioned cannot be provisioned.",
        stranger.pk: operations.NOT_FOUND,
        99999999: operations.NOT_FOUND,
    }
    assert "SN-STRANGER" not in response.content.decode()
    assert set(
        Device.objects.filter(pk__in=[d.pk for d in fresh]).values_list("state", flat=True)
    ) == {S.PROVISIONING}
    stranger.refresh_from_db()
    assert stranger.state == S.DISCOVERED
    assert Operation.objects.filter(bulk=bulk).count() == 3
    assert AuditEntry.objects.filter(action="device.provision", object_count=3).exists()
    # the Location answers with progress
    progress = manager.get(response["Location"]).json()
    assert (progress["total"], progress["done"], progress["open"]["queued"]) == (3, 0, 3)


def test_a_whole_group_and_deprovision(org, online, manager):
    make_license(org, seats=10)
    group = make_group(org, "Floor 2")
    for device in fleet(org, online, 4, state=S.PROVISIONED):
        device.groups.add(group)
    fleet(org, online, 2, state=S.PROVISIONED)  # not in the group
    response = manager.post(ACTIONS, {"action": "deprovision", "group": group.pk})
    assert response.status_code == 202
    assert response.json()["target"] == "all devices of group “Floor 2”"
    assert Device.objects.filter(state=S.DEPROVISIONING).count() == 4


def test_preview_returns_the_plan_and_starts_nothing(org, online, manager):
    make_license(org, seats=2)
    fresh = fleet(org, online, 3)
    ids = [d.pk for d in fresh] + [make_device(make_organization()).pk]
    response = manager.post(ACTIONS, {"action": "provision", "devices": ids, "preview": True})
    assert response.status_code == 200
    plan = response.json()
    assert plan["eligible"] == 3 and plan["requested"] == 4
    assert plan["seats_needed"] == 3 and plan["seats_free"] == 2 and plan["over_capacity"]
    assert plan["gateways"] == [
        {"id": online.pk, "name": "Roof gateway", "online": True, "devices": 3}
    ]
    assert plan["skipped_reasons"] == [{"reason": operations.NOT_FOUND, "count": 1}]
    assert not BulkOperation.objects.exists()
    assert set(Device.objects.values_list("state", flat=True)) == {S.DISCOVERED}


def test_over_capacity_is_409_with_free_seats_and_nothing_changes(org, online, manager):
    make_license(org, seats=2)
    fresh = fleet(org, online, 3)
    response = manager.post(ACTIONS, {"action": "provision", "devices": [d.pk for d in fresh]})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "capacity_exceeded" and body["seats_free"] == 2
    assert body["seats_requested"] == 3 and body["seats_total"] == 2
    assert "Only 2 of the requested 3 devices can be provisioned" in body["detail"]
    assert not BulkOperation.objects.exists() and not Operation.objects.exists()
    assert set(Device.objects.values_list("state", flat=True)) == {S.DISCOVERED}


def test_nothing_to_do_is_409_with_every_reason(org, online, manager):
    done = make_device(org, gateway=online, state=S.PROVISIONED)
    no_gateway = make_device(org)
    theirs = make_device(make_organization())
    ids = [done.pk, no_gateway.pk, theirs.pk]
    response = manager.post(ACTIONS, {"action": "provision", "devices": ids})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "nothing_to_do"
    assert {s["id"]: s["reason"] for s in body["skipped"]} == {
        done.pk: "A device that is provisioned cannot be provisioned.",
        no_gateway.pk: operations.NO_GATEWAY,
        theirs.pk: operations.NOT_FOUND,
    }
    assert not BulkOperation.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"devices": [1]}, "action"),
        ({"action": "explode", "devices": [1]}, "action"),
        ({"action": "provision", "devices": "1,2,3"}, "devices"),
        ({"action": "provision", "devices": ["a", "b"]}, "devices"),
        ({"action": "provision", "devices": [1.5]}, "devices"),
        ({"action": "provision", "devices": [{"id": 1}]}, "devices"),
        ({"action": "provision", "devices": [0]}, "devices"),
        ({"action": "provision", "devices": []}, "devices"),
        ({"action": "provision", "devices": None}, "devices"),
        ({"action": "provision", "group": "floor"}, "group"),
        ({"action": "provision", "devices": [1], "group": 1}, "non_field_errors"),
        ({"action": "provision"}, "non_field_errors"),
        ({"action": "provision", "devices": list(range(1, MAX_SELECTION + 2))}, "devices"),
        ({"action": "provision", "devices": [1], "preview": "perhaps"}, "preview"),
    ],
    ids=[
        "missing-action",
        "action-not-a-choice",
        "devices-a-string",
        "devices-not-ints",
        "devices-floats",
        "devices-objects",
        "devices-zero",
        "devices-empty",
        "devices-null",
        "group-not-an-id",
        "both-devices-and-group",
        "neither",
        "too-many",
        "preview-not-a-boolean",
    ],
)
def test_malformed_bodies_are_400_with_field_errors(manager, body, field):
    response = manager.post(ACTIONS, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field], errors  # the field named, with its messages
    assert not BulkOperation.objects.exists()


def test_too_many_ids_and_foreign_group_messages(manager):
    ids = list(range(1, MAX_SELECTION + 2))
    response = manager.post(ACTIONS, {"action": "provision", "devices": ids})
    assert response.json() == {"devices": ["Give at most 10,000 devices at a time."]}
    theirs = make_group(make_organization())
    response = manager.post(ACTIONS, {"action": "provision", "group": theirs.pk})
    assert response.status_code == 400
    assert response.json() == {"group": ["No such group in this organization."]}


def test_a_json_body_that_is_not_json_is_400(manager):
    response = manager.post(ACTIONS, "{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()


def test_form_encoded_bodies_work_too(org, online, manager):
    make_license(org, seats=5)
    devices = fleet(org, online, 2)
    response = manager.post(
        ACTIONS, {"action": "provision", "devices": [d.pk for d in devices]}, format="multipart"
    )
    assert response.status_code == 202 and response.json()["total"] == 2


def test_roles_gate_actions(org, online):
    device = make_device(org, gateway=online)
    iot = api_client(make_member(org, [Role.IOT_MANAGER]))
    response = iot.post(ACTIONS, {"action": "provision", "devices": [device.pk]})
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Your role groups do not allow this: it needs Administrator or Device Manager."
    )
    assert not BulkOperation.objects.exists()


# -- bulk operations: list, detail, failures, cancel, retry ---------------------------


def test_operation_detail_failures_cancel_and_retry(org, online, manager, settings):
    settings.OPERATIONS = {**settings.OPERATIONS, "GATEWAY_CONCURRENCY": 2}
    make_license(org, seats=10)
    devices = fleet(org, online, 4)
    start = manager.post(ACTIONS, {"action": "provision", "devices": [d.pk for d in devices]})
    bulk_url = start["Location"]
    bulk_id = start.json()["id"]
    fail_all(org, online)  # two were sent (the cap) and refused

    listed = manager.get(OPERATIONS).json()
    assert [b["id"] for b in listed["results"]] == [bulk_id]
    detail = manager.get(bulk_url).json()
    assert (detail["total"], detail["failed"], detail["open"]["queued"]) == (4, 2, 2)
    assert {f["error"] for f in detail["failed_devices"]} == {"wrong key"}
    failures = manager.get(reverse("api:operation-failures", args=[bulk_id])).json()
    assert failures["count"] == 2 and failures["results"][0]["code"] == "rejected"

    cancelled = manager.post(reverse("api:operation-cancel", args=[bulk_id]))
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled"] == 2
    assert cancelled.json()["operation"]["running"] is False

    failed_ids = [f["device"] for f in failures["results"]]
    retry = manager.post(
        reverse("api:operation-retry-failed", args=[bulk_id]), {"devices": failed_ids[:1]}
    )
    assert retry.status_code == 202
    assert retry.json()["total"] == 1 and retry.json()["id"] != bulk_id
    again = manager.post(reverse("api:operation-retry-failed", args=[bulk_id]))
    assert again.status_code == 202 and again.json()["total"] == 1
    nothing = manager.post(reverse("api:operation-retry-failed", args=[bulk_id]))
    assert nothing.status_code == 409 and nothing.json()["code"] == "nothing_to_do"


def test_retry_over_capacity_is_409(org, online, manager):
    make_license(org, seats=2)
    devices = fleet(org, online, 2)
    start = manager.post(ACTIONS, {"action": "provision", "devices": [d.pk for d in devices]})
    fail_all(org, online)
    fleet(org, online, 2, state=S.PROVISIONED)  # the seats are gone meanwhile
    response = manager.post(reverse("api:operation-retry-failed", args=[start.json()["id"]]))
    assert response.status_code == 409 and response.json()["seats_free"] == 0
    assert BulkOperation.objects.count() == 1


# -- groups --------------------------------------------------------------------------


def test_group_crud_and_membership(org, online, manager):
    devices = fleet(org, online, 3)
    theirs = make_device(make_organization())
    created = manager.post(GROUPS, {"name": "  Floor   3 ", "description": "east wing"})
    assert created.status_code == 201, created.json()
    group = created.json()
    assert group["name"] == "Floor 3" and group["device_count"] == 0
    url = reverse("api:group-detail", args=[group["id"]])

    clash = manager.post(GROUPS, {"name": "floor 3"})
    assert clash.status_code == 400
    assert clash.json() == {"name": ["A group with this name already exists."]}
    assert manager.post(GROUPS, {}).json() == {"name": ["This field is required."]}

    add = manager.post(
        reverse("api:group-add-devices", args=[group["id"]]),
        {"devices": [devices[0].pk, devices[1].pk, theirs.pk]},
    )
    assert add.status_code == 200
    assert add.json() == {
        "changed": [devices[0].pk, devices[1].pk],
        "unchanged": 0,
        "not_found": [theirs.pk],
    }
    again = manager.post(
        reverse("api:group-add-devices", args=[group["id"]]), {"devices": [devices[0].pk]}
    )
    assert again.json() == {"changed": [], "unchanged": 1, "not_found": []}
    assert manager.get(url).json()["device_count"] == 2
    remove = manager.post(
        reverse("api:group-remove-devices", args=[group["id"]]),
        {"devices": [devices[1].pk, devices[2].pk]},
    )
    assert remove.json() == {"changed": [devices[1].pk], "unchanged": 1, "not_found": []}
    assert manager.post(
        reverse("api:group-remove-devices", args=[group["id"]]), {"devices": "all"}
    ).json() == {"devices": ['Expected a list of items but got type "str".']}

    renamed = manager.patch(url, {"name": "Floor 4"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Floor 4"
    assert renamed.json()["description"] == "east wing" and renamed.json()["device_count"] == 1
    assert manager.put(url, {"name": "Floor 5", "description": ""}).json()["description"] == ""
    assert manager.delete(url).status_code == 204
    assert Device.objects.count() == 4  # deleting a group keeps its devices
    actions = list(
        AuditEntry.objects.filter(action__startswith="group.").values_list("action", flat=True)
    )
    assert sorted(actions) == sorted(
        [
            "group.create",
            "group.add_devices",
            "group.add_devices",
            "group.remove_devices",
            "group.rename",
            "group.rename",
            "group.delete",
        ]
    )


def test_groups_are_read_only_for_plain_members(org, viewer):
    group = make_group(org, "Floor 1")
    assert viewer.get(GROUPS).json()["results"][0]["name"] == "Floor 1"
    assert viewer.post(GROUPS, {"name": "Mine"}).status_code == 403
    assert viewer.delete(reverse("api:group-detail", args=[group.pk])).status_code == 403


# -- gateways ------------------------------------------------------------------------


def test_gateways_never_show_their_secret(org, online, viewer):
    make_gateway(org, name="Basement", secret="t" * 32)
    make_device(org, gateway=online)
    response = viewer.get(GATEWAYS)
    body = response.content.decode()
    assert response.status_code == 200
    assert "secret" not in re.sub(r'"secret_rotated_at"', "", body)
    assert "s" * 32 not in body and "t" * 32 not in body
    rows = {row["name"]: row for row in response.json()["results"]}
    assert rows["Roof gateway"]["device_count"] == 1 and rows["Roof gateway"]["is_online"]
    assert [r["name"] for r in viewer.get(GATEWAYS, {"status": "offline"}).json()["results"]] == [
        "Basement"
    ]
    assert [r["name"] for r in viewer.get(GATEWAYS, {"q": "roof"}).json()["results"]] == [
        "Roof gateway"
    ]
    assert viewer.get(GATEWAYS, {"status": "asleep"}).status_code == 400
    detail = viewer.get(reverse("api:gateway-detail", args=[online.pk]))
    assert detail.status_code == 200 and "s" * 32 not in detail.content.decode()
    assert viewer.post(GATEWAYS, {"name": "x"}).status_code == 405


# -- licenses ------------------------------------------------------------------------


def license_file(org, seats=5, **fields):
    today = timezone.localdate()
    return signing.issue(
        DEMO_PRIVATE_KEY,
        {
            "organization": org.slug,
            "capacity": seats,
            "valid_from": fields.get("valid_from", today - timedelta(days=1)),
            "valid_until": fields.get("valid_until", today + timedelta(days=30)),
        },
    )


def test_licenses_list_and_usage(org, online, viewer):
    make_license(org, seats=10)
    make_license(
        org,
        seats=99,
        valid_from=timezone.localdate() - timedelta(days=60),
        valid_until=timezone.localdate() - timedelta(days=1),
    )
    fleet(org, online, 3, state=S.PROVISIONED)
    licenses = viewer.get(LICENSES).json()["results"]
    assert sorted((lic["capacity"], lic["status"]) for lic in licenses) == [
        (10, "valid"),
        (99, "expired"),
    ]
    assert "raw" not in licenses[0]
    usage = viewer.get(reverse("api:license-usage")).json()
    assert usage == {"used": 3, "total": 10, "free": 7, "over_capacity": False}


def test_administrators_upload_license_files_with_the_widgets_validation(org, admin, manager):
    data = license_file(org, seats=25)
    assert manager.post(LICENSES, {"text": data.decode()}).status_code == 403
    response = admin.post(LICENSES, {"text": data.decode()})
    assert response.status_code == 201, response.json()
    assert response.json()["capacity"] == 25 and response.json()["status"] == "valid"
    assert License.objects.for_organization(org).count() == 1
    # the same file again: refused with the widget's sentence
    again = admin.post(LICENSES, {"file": io.BytesIO(data)}, format="multipart")
    assert again.status_code == 400
    assert list(again.json()) == ["file"] and "already" in again.json()["file"][0]
    # another organization's file
    theirs = license_file(make_organization(slug="globex"), seats=5)
    response = admin.post(LICENSES, {"text": theirs.decode()})
    assert response.status_code == 400 and list(response.json()) == ["text"]
    assert admin.post(LICENSES, {}).json() == {
        "non_field_errors": ["Choose a license file or paste its contents."]
    }
    assert AuditEntry.objects.filter(action="license.upload", outcome="failure").count() == 3
    assert AuditEntry.objects.filter(action="license.upload", outcome="success").count() == 1


# -- authentication and organizations ----------------------------------------------


def test_token_authentication_and_bad_tokens(org):
    user = make_member(org)
    assert api_client(user).get(DEVICES).status_code == 200
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = bad.get(DEVICES)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    anonymous = APIClient().get(DEVICES)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    user.is_active = False
    user.save()
    assert api_client(user).get(DEVICES).status_code == 401


def test_session_authentication_needs_csrf_for_writes(org, online):
    from django.test import Client

    make_license(org, seats=5)
    device = make_device(org, gateway=online)
    user = make_member(org, [Role.DEVICE_MANAGER])
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    assert client.get(DEVICES).status_code == 200
    body = {"action": "provision", "devices": [device.pk]}
    refused = client.post(ACTIONS, body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get(reverse("dashboard"))  # sets the CSRF cookie, as the portal's pages do
    token = client.cookies["csrftoken"].value
    accepted = client.post(ACTIONS, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 202


def test_x_organization_header_chooses_among_the_users_organizations(org):
    other = make_organization(name="Zeta", slug="zeta")
    make_device(org, serial_number="SN-ACME")
    make_device(other, serial_number="SN-ZETA")
    user = make_member(org, [Role.DEVICE_MANAGER])
    make_membership(user, other, [])
    client = api_client(user)

    def serials(**headers):
        response = client.get(DEVICES, headers=headers)
        return response.status_code, [
            row["serial_number"] for row in response.json().get("results", [])
        ]

    # A token call of a user of several organizations names one: never a silent default.
    assert serials() == (400, [])
    detail = client.get(DEVICES).json()["detail"]
    assert "X-Organization" in detail and f"zeta ({other.pk})" in detail
    assert f"{org.slug} ({org.pk})" in detail
    assert serials(**{"X-Organization": "zeta"}) == (200, ["SN-ZETA"])
    assert serials(**{"X-Organization": str(other.pk)}) == (200, ["SN-ZETA"])
    # the roles are those of the chosen organization: none in Zeta
    response = client.post(
        ACTIONS, {"action": "provision", "group": 1}, headers={"X-Organization": "zeta"}
    )
    assert response.status_code == 403
    stranger = make_organization(slug="stranger")
    for value in ("stranger", str(stranger.pk), "nope", "0"):
        response = client.get(DEVICES, headers={"X-Organization": value})
        assert response.status_code == 403
        assert response.json() == {"detail": "X-Organization names no organization you belong to."}


def test_the_sessions_organization_applies_to_the_api(org, login):
    other = make_organization(name="Zeta", slug="zeta")
    make_device(other, serial_number="SN-ZETA")
    user = make_member(org)
    make_membership(user, other)
    client = login(user)
    client.post(reverse("switch-organization"), {"organization": other.pk})
    rows = client.get(DEVICES).json()["results"]
    assert [r["serial_number"] for r in rows] == ["SN-ZETA"]


def test_a_user_of_no_organization_gets_403(db):
    from tests.factories import make_user

    response = api_client(make_user()).get(DEVICES)
    assert response.status_code == 403
    assert response.json() == {"detail": "You belong to no organization."}


# -- schema and docs -----------------------------------------------------------------


def test_the_openapi_schema_is_valid_and_has_every_path(org):
    client = api_client(make_member(org))
    response = client.get(reverse("api:schema"))
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate_schema(schema)
    paths = set(schema["paths"])
    assert {
        "/api/v1/devices/",
        "/api/v1/devices/{id}/",
        "/api/v1/devices/actions/",
        "/api/v1/groups/",
        "/api/v1/groups/{id}/",
        "/api/v1/groups/{id}/add-devices/",
        "/api/v1/groups/{id}/remove-devices/",
        "/api/v1/gateways/",
        "/api/v1/gateways/{id}/",
        "/api/v1/operations/",
        "/api/v1/operations/{id}/",
        "/api/v1/operations/{id}/cancel/",
        "/api/v1/operations/{id}/retry-failed/",
        "/api/v1/operations/{id}/failures/",
        "/api/v1/licenses/",
        "/api/v1/licenses/usage/",
    } <= paths
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    json_schema = client.get(reverse("api:schema"), {"format": "json"})
    assert json_schema.status_code == 200 and json_schema.json()["paths"].keys() == paths


def test_the_schema_generates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_the_schema_needs_a_login():
    assert APIClient().get(reverse("api:schema")).status_code == 401


@pytest.mark.parametrize("name", ["api:docs", "api:redoc"])
def test_the_docs_pages_load_everything_from_our_own_static_files(org, login, name):
    client = login(make_member(org))
    response = client.get(reverse(name))
    assert response.status_code == 200
    body = response.content.decode()
    assert "cdn" not in body.lower()
    assert "https://" not in body and "http://" not in body
    assert '<html lang="en">' in body  # axe: a page must say its language
    assert "<script>" not in body and "<style>" not in body  # nothing inline (CSP)
    resources = re.findall(r'<(?:script src|link rel="(?:stylesheet|icon)" href)="([^"]+)"', body)
    assert resources, body
    for source in resources:
        if name == "api:docs" and source.startswith(reverse(name)):
            continue  # Swagger UI's start-up script, served by the view itself
        assert source.startswith("/static/"), source
        assert finders.find(source.removeprefix("/static/")), f"{source} is not installed"
    if name == "api:docs":
        script = client.get(reverse(name), {"script": ""}).content.decode()
        assert reverse("api:schema") in script
        assert '"validatorUrl": null' in script  # no badge from the public validator
    else:
        assert reverse("api:schema") in body
        # Redoc's bundle may not fetch its logo (or anything) from elsewhere.
        assert "img-src 'self' data: blob:;" in response["Content-Security-Policy"]


@pytest.mark.parametrize("name", ["api:docs", "api:redoc"])
def test_the_docs_pages_ask_a_visitor_to_log_in(client, name):
    """Issue 9, point 5: "log in to try the API", in the portal's layout, not a bare 401."""
    response = client.get(reverse(name))
    assert response.status_code == 401
    body = response.content.decode()
    assert "Log in to try the API" in body and 'class="topbar"' in body
    assert f'href="{reverse("login")}?next={reverse(name)}"' in body
