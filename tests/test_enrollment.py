"""Enrollment records: create, send through gateways, follow outcomes, retry, app-only,
delete (unenroll); the widget, the form, the role rule per role combination."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from devices import operations
from devices.choices import DeviceState as S
from devices.choices import OperationState
from devices.ingest import GatewayRef
from devices.lifecycle import Action
from devices.models import Device, Operation
from enrollment import services
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentRecord
from licensing import capacity
from licensing.capacity import CapacityExceeded
from portal import permissions
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)
from tests.test_isolation import COMBINATIONS, _combo_id
from tests.test_operations import answer, send_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(org):
    return make_member(org, ["administrator"])


@pytest.fixture
def gateway(org):
    return make_gateway(org, is_online=True, secret="s" * 32)


@pytest.fixture
def device_type():
    return make_device_type(name="BLE mesh node")


def rows(gateway, device_type, n, prefix="ENR"):
    return [
        {
            "serial_number": f"{prefix}-{i:04d}",
            "access_key": f"KEY-{prefix}-{i:04d}",
            "device_type": device_type,
            "gateway": gateway,
            "name": f"Lamp {i}",
        }
        for i in range(n)
    ]


def enroll(org, user, gateway, device_type, n=3, prefix="ENR"):
    records = services.create(org, user, rows(gateway, device_type, n, prefix))
    bulk = services.send(org, user, records)
    return records, bulk


def test_sending_creates_devices_enrolling_with_seats_and_encrypted_keys(
    org, admin, gateway, device_type
):
    make_license(org, seats=10)
    records, bulk = enroll(org, admin, gateway, device_type)
    assert bulk.kind == Action.ENROLL and bulk.total == 3
    devices = Device.objects.for_organization(org)
    assert set(devices.values_list("state", flat=True)) == {S.ENROLLING}
    assert capacity.usage(org).used == 3
    assert set(EnrollmentRecord.objects.values_list("status", flat=True)) == {
        EnrollmentStatus.IN_PROGRESS
    }
    # The key reaches the gateway in the command, and is ciphertext in every table.
    items = operations.command_items(operations.claim_for_dispatch(gateway.id))
    codes = sorted(item["params"]["code"] for item in items)
    assert codes == ["KEY-ENR-0000", "KEY-ENR-0001", "KEY-ENR-0002"]
    assert {item["params"]["device_type"] for item in items} == {"BLE mesh node"}
    with connection.cursor() as cursor:
        for table, column in (
            (Operation._meta.db_table, "params"),
            (EnrollmentRecord._meta.db_table, "access_key"),
        ):
            cursor.execute(f"SELECT {column} FROM {table}")
            stored = " ".join(row[0] for row in cursor.fetchall())
            assert "KEY-ENR" not in stored and stored


def test_outcomes_reach_the_records_and_failures_can_be_retried(org, admin, gateway, device_type):
    make_license(org, seats=10)
    records, bulk = enroll(org, admin, gateway, device_type)
    send_all([gateway])
    ops = list(Operation.objects.filter(bulk=bulk).order_by("id"))
    answer(ops[:2])
    answer(ops[2:], ok=False, code="rejected", reason="wrong access key")
    by_serial = {r.serial_number: r for r in EnrollmentRecord.objects.all()}
    assert by_serial["ENR-0000"].status == EnrollmentStatus.DONE
    failed = by_serial["ENR-0002"]
    assert (failed.status, failed.reason) == (EnrollmentStatus.FAILED, "wrong access key")
    assert Device.objects.get(serial_number="ENR-0000").state == S.PROVISIONED
    assert Device.objects.get(serial_number="ENR-0002").state == S.FAILED
    assert capacity.usage(org).used == 2

    again = services.retry(org, admin, [failed])
    failed.refresh_from_db()
    assert again.total == 1 and failed.status == EnrollmentStatus.IN_PROGRESS
    send_all([gateway])
    answer(list(Operation.objects.filter(bulk=again)))
    failed.refresh_from_db()
    assert failed.status == EnrollmentStatus.DONE and failed.reason == ""


def test_failures_with_a_reason_each_cost_the_same_queries_for_5_or_40_devices(
    org, admin, gateway, device_type
):
    """Each device fails for its own reason; the batch's queries do not grow with them.

    The bridge hands over a batch of results; its operations, devices, bulk counters and
    enrollment records are each written with one statement, however many reasons.
    """
    make_license(org, seats=100)

    def fail_each_differently(n, prefix):
        _records, bulk = enroll(org, admin, gateway, device_type, n=n, prefix=prefix)
        send_all([gateway])
        ops = list(Operation.objects.filter(bulk=bulk))
        batch = [
            (
                GatewayRef(gateway.id, gateway.uid, org.pk, gateway.secret),
                [
                    {"op": op.wire_id, "ok": False, "code": "rejected", "reason": f"bad key {i}"}
                    for i, op in enumerate(ops)
                ],
            )
        ]
        with CaptureQueriesContext(connection) as queries:
            operations.complete(batch, timezone.now())
        return len(queries)

    few, many = fail_each_differently(5, "FEW"), fail_each_differently(40, "MANY")
    assert few == many
    reasons = dict(
        EnrollmentRecord.objects.filter(serial_number__startswith="MANY").values_list(
            "serial_number", "reason"
        )
    )
    assert len(set(reasons.values())) == 40 and reasons["MANY-0007"] == "bad key 7"
    failed = Operation.objects.filter(
        state=OperationState.FAILED, device__serial_number="MANY-0007"
    )
    assert failed.get().error == "bad key 7"
    assert Device.objects.get(serial_number="MANY-0007").state == S.FAILED


def test_over_capacity_nothing_is_sent(org, admin, gateway, device_type):
    make_license(org, seats=2)
    records = services.create(org, admin, rows(gateway, device_type, 3))
    with pytest.raises(CapacityExceeded):
        services.send(org, admin, records)
    assert not Operation.objects.exists() and not Device.objects.exists()
    assert set(EnrollmentRecord.objects.values_list("status", flat=True)) == {"pending"}


def test_refusals_name_enrolled_and_pending_serials(org, admin, gateway, device_type):
    make_license(org, seats=10)
    make_device(org, serial_number="IN-USE", state=S.PROVISIONED)
    make_device(org, serial_number="FREE", state=S.DISCOVERED)
    services.create(org, admin, rows(gateway, device_type, 1, prefix="WAIT"))
    reasons = services.refusals(org, ["IN-USE", "FREE", "WAIT-0000", "NEW"])
    assert reasons == {
        "IN-USE": services.ALREADY_ENROLLED,
        "WAIT-0000": services.ALREADY_REQUESTED,
    }
    # Another organization's devices are no reason at all.
    assert services.refusals(make_organization(), ["IN-USE"]) == {}


def test_a_discovered_device_is_enrolled_through_the_chosen_gateway(
    org, admin, gateway, device_type
):
    make_license(org, seats=10)
    elsewhere = make_gateway(org, is_online=True)
    seen = make_device(org, serial_number="ENR-0000", state=S.DISCOVERED, gateway=elsewhere)
    enroll(org, admin, gateway, device_type, n=1)
    seen.refresh_from_db()
    assert (seen.state, seen.gateway_id) == (S.ENROLLING, gateway.id)


def test_app_only_enrollment_is_done_at_once_and_takes_a_seat(org, admin, device_type):
    make_license(org, seats=1)
    record = services.record_app_enrollment(
        org,
        admin,
        {"serial_number": "APP-1", "access_key": "K-APP-1", "device_type": device_type},
    )
    assert record.status == EnrollmentStatus.DONE and record.app_only
    assert record.device.state == S.PROVISIONED and capacity.usage(org).used == 1
    with pytest.raises(CapacityExceeded):
        services.record_app_enrollment(
            org,
            admin,
            {"serial_number": "APP-2", "access_key": "K-APP-2", "device_type": device_type},
        )
    assert not EnrollmentRecord.objects.filter(serial_number="APP-2").exists()


def test_deleting_sends_the_unenrollment_and_the_ack_unenrolls(org, admin, gateway):
    device = make_device(org, gateway=gateway, state=S.PROVISIONED)
    make_license(org, seats=1)
    assert operations.delete_devices(org, admin, Device.objects.filter(pk=device.pk), "one") == 1
    device.refresh_from_db()
    assert device.state == S.UNENROLL_PENDING and capacity.usage(org).used == 0
    [item] = operations.command_items(operations.claim_for_dispatch(gateway.id))
    assert item["kind"] == "unenroll" and "params" not in item
    op = Operation.objects.get(kind=Action.UNENROLL)
    answer([op], ok=False, code="timeout")  # retried later, the device still waits
    device.refresh_from_db()
    assert device.state == S.UNENROLL_PENDING
    op.refresh_from_db()
    send_all([gateway], now=op.next_attempt_at)
    op.refresh_from_db()
    answer([op])
    device.refresh_from_db()
    assert device.state == S.UNENROLLED


def test_a_hello_resends_unenrollments_that_gave_up(org, admin, gateway):
    device = make_device(org, gateway=gateway, state=S.PROVISIONED)
    operations.delete_devices(org, admin, Device.objects.filter(pk=device.pk), "one")
    op = Operation.objects.get()
    operations.cancel(op.bulk, admin)  # say: it expired while the gateway was away
    ref = GatewayRef(gateway.id, gateway.uid, org.id, gateway.secret)
    operations.gateways_back([ref], None)
    assert Operation.objects.filter(kind=Action.UNENROLL, state=OperationState.QUEUED).count() == 1
    operations.gateways_back([ref], None)  # one open unenrollment is enough
    assert Operation.objects.filter(kind=Action.UNENROLL).count() == 2


# -- the portal ------------------------------------------------------------------------


def test_the_widget_lists_records_without_their_keys(client, org, admin, gateway, device_type):
    make_license(org, seats=10)
    enroll(org, admin, gateway, device_type)
    client.force_login(admin)
    body = client.get(reverse("enrollment:widget"), HTTP_HX_REQUEST="true").content.decode()
    assert "ENR-0001" in body and "In progress" in body
    assert "KEY-ENR" not in body


@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
def test_enrolling_through_the_form_follows_the_role_rule(client, org, gateway, device_type, roles):
    make_license(org, seats=10)
    client.force_login(make_member(org, roles))
    response = client.post(
        reverse("enrollment:create"),
        {
            "serial_number": "FORM-1",
            "access_key": "SECRET-KEY-1",
            "device_type": device_type.pk,
            "gateway": gateway.pk,
        },
        HTTP_HX_REQUEST="true",
    )
    if permissions.allows("enroll", roles):
        assert response.status_code == 204, response.content
        assert EnrollmentRecord.objects.get().status == EnrollmentStatus.IN_PROGRESS
        assert "Enrolling FORM-1" in json.loads(response["HX-Trigger"])["groupsChanged"]["message"]
    else:
        assert response.status_code == 403
        assert not EnrollmentRecord.objects.exists()


def test_the_form_refuses_bad_input_with_field_errors(client, org, admin, gateway, device_type):
    make_device(org, serial_number="TAKEN", state=S.PROVISIONED)
    client.force_login(admin)
    response = client.post(
        reverse("enrollment:create"),
        {"serial_number": "TAKEN", "access_key": "x", "device_type": device_type.pk},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert services.ALREADY_ENROLLED in body
    assert "An access key is 4 to 128" in body and "This field is required" in body
    assert not EnrollmentRecord.objects.exists()


def test_over_capacity_the_form_stores_nothing_and_says_why(
    client, org, admin, gateway, device_type
):
    client.force_login(admin)  # no license at all
    response = client.post(
        reverse("enrollment:create"),
        {
            "serial_number": "NOSEAT",
            "access_key": "KEY-NOSEAT",
            "device_type": device_type.pk,
            "gateway": gateway.pk,
        },
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Nothing was enrolled. Only 0 of the requested 1" in response.content.decode()
    assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()


def test_retry_is_scoped_and_needs_the_enroll_rule(client, org, admin, gateway, device_type):
    make_license(org, seats=10)
    records, bulk = enroll(org, admin, gateway, device_type, n=1)
    send_all([gateway])
    answer(list(Operation.objects.all()), ok=False, code="rejected", reason="no")
    record = EnrollmentRecord.objects.get()
    client.force_login(make_member(org, ["device_manager"]))
    assert client.post(reverse("enrollment:retry", args=[record.pk])).status_code == 403
    other = make_member(make_organization(), ["administrator"])
    client.force_login(other)
    assert client.post(reverse("enrollment:retry", args=[record.pk])).status_code == 404
    client.force_login(admin)
    response = client.post(reverse("enrollment:retry-failed"), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    record.refresh_from_db()
    assert record.status == EnrollmentStatus.IN_PROGRESS


def test_deleting_a_device_in_the_portal_asks_first(client, org, admin, gateway):
    device = make_device(org, gateway=gateway, state=S.PROVISIONED, serial_number="GONE-1")
    client.force_login(admin)
    url = reverse("devices:delete", args=[device.pk])
    page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "frees its license seat" in page and "Delete and unenroll" in page
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    device.refresh_from_db()
    assert device.state == S.UNENROLL_PENDING
    client.force_login(make_member(org, ["device_manager"]))
    assert client.post(url).status_code == 403


def test_the_admin_adds_and_changes_no_record(client, org, admin, gateway, device_type):
    from tests.factories import make_staff

    records = services.create(org, admin, rows(gateway, device_type, 1))
    client.force_login(make_staff(org, superuser=True))
    assert client.get(reverse("admin:enrollment_enrollmentrecord_add")).status_code == 403
    page = client.get(
        reverse("admin:enrollment_enrollmentrecord_change", args=[records[0].pk])
    ).content.decode()
    assert "ENR-0000" in page and "KEY-ENR-0000" not in page


def test_simulated_keys_lists_each_simulated_device_with_its_label_key(tmp_path, org):
    from django.core.management import call_command

    from gateway.drivers.simulated import access_key

    make_gateway(org, uid="sim-a")
    out = tmp_path / "labels.csv"
    call_command("simulated_keys", organization=org.slug, devices=3, out=str(out))
    lines = out.read_text(encoding="utf-8-sig").splitlines()  # portal.exports: with a BOM
    assert lines[0] == "serial,key,gateway" and len(lines) == 4
    serial, key, uid = lines[1].split(",")
    assert (key, uid) == (access_key(serial), "sim-a")
