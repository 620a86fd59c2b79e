"""The enrollment REST API: enroll through a gateway, app-only enrollment, photos, QR
decoding, nearby devices, retry — and an access key never in any response."""

import io

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import ExifTags, Image
from rest_framework.test import APIClient

from devices.choices import DeviceState as S
from devices.models import Device
from enrollment import services
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentRecord
from portal import permissions
from portal.choices import Role
from portal.models import AuditEntry
from tests.factories import (
    api_client,
    make_device,
    make_device_type,
    make_gateway,
    make_license,
    make_member,
    make_organization,
)
from tests.test_enrollment_qr import bomb_png, gps_jpeg, label_photo, noisy_background, qr_photo
from tests.test_isolation import COMBINATIONS, _combo_id

pytestmark = pytest.mark.django_db

ENROLLMENTS = reverse("api:enrollment-list")
APP = reverse("api:enrollment-app")
DECODE = reverse("api:enrollment-decode-qr")
NEARBY = reverse("api:nearby-list")
KEY = "Very-Secret-Key-7731"
ENROLLERS = [Role.ADMINISTRATOR], [Role.DEVICE_MANAGER, Role.IOT_MANAGER]


def photo_url(record):
    return reverse("api:enrollment-photo", args=[record.pk])


@pytest.fixture
def org():
    org = make_organization(name="Acme", slug="acme")
    make_license(org, seats=10)
    return org


@pytest.fixture
def thermostat():
    return make_device_type("Thermostat")


@pytest.fixture
def gateway(org):
    return make_gateway(org, uid="gw-roof", name="Roof gateway", is_online=True, secret="s" * 32)


@pytest.fixture
def installer(org):
    return api_client(make_member(org, [Role.DEVICE_MANAGER, Role.IOT_MANAGER]))


@pytest.fixture
def viewer(org):
    return api_client(make_member(org, []))


def body(serial="SN-API-1", **extra):
    return {
        "serial_number": serial,
        "access_key": KEY,
        "device_type": "Thermostat",
        "gateway": "gw-roof",
        "name": "Hall thermostat",
        "location_note": "Hall, 2nd floor",
    } | extra


def enroll(client, serial="SN-API-1", **extra):
    return client.post(ENROLLMENTS, body(serial, **extra), format="json")


# -- enroll through a gateway --------------------------------------------------------


def test_create_records_and_sends_at_once(org, thermostat, gateway, installer):
    response = enroll(installer)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["serial_number"] == "SN-API-1" and data["status"] == "in_progress"
    assert data["gateway"] == {"id": gateway.pk, "name": "Roof gateway", "uid": "gw-roof"}
    assert data["device_type"]["name"] == "Thermostat" and not data["app_only"]
    assert "access_key" not in data and KEY not in response.content.decode()
    assert response["Location"] == reverse("api:enrollment-detail", args=[data["id"]])
    record = EnrollmentRecord.objects.get(pk=data["id"])
    assert record.access_key == KEY and record.organization == org
    assert record.device.state == S.ENROLLING
    assert AuditEntry.objects.filter(action="enrollment.create").exists()


def test_type_and_gateway_may_be_given_by_id(thermostat, gateway, installer):
    response = enroll(installer, device_type=thermostat.pk, gateway=gateway.pk)
    assert response.status_code == 201, response.content
    assert response.json()["gateway"]["id"] == gateway.pk


def test_the_key_is_never_in_any_response(org, thermostat, gateway, installer, viewer):
    created = enroll(installer).json()
    record = EnrollmentRecord.objects.get(pk=created["id"])
    EnrollmentRecord.objects.filter(pk=record.pk).update(status=EnrollmentStatus.FAILED)
    responses = [
        installer.get(ENROLLMENTS),
        viewer.get(ENROLLMENTS),
        installer.get(reverse("api:enrollment-detail", args=[record.pk])),
        installer.post(reverse("api:enrollment-retry", args=[record.pk])),
        installer.post(APP, body("SN-APP-1") | {"gateway": ""}, format="json"),
        installer.post(
            reverse("api:enrollment-photo", args=[record.pk]),
            {"photo": io.BytesIO(gps_jpeg())},
            format="multipart",
        ),
        installer.post(
            DECODE,
            {"image": io.BytesIO(label_photo("SN-QR-9", key=KEY))},
            format="multipart",
        ),
        enroll(installer, "SN-API-2", gateway="nope"),  # field errors
        installer.get(reverse("api:schema")),
    ]
    for response in responses:
        assert response.status_code < 500
        assert KEY not in response.content.decode(), response.request["PATH_INFO"]


def test_over_capacity_is_409_and_nothing_is_stored(org, thermostat, gateway, installer):
    other = make_organization()
    tight = make_organization(slug="tight")
    make_license(tight, seats=1)
    tight_gateway = make_gateway(tight, uid="gw-tight", is_online=True)
    client = api_client(make_member(tight, [Role.ADMINISTRATOR]))
    assert enroll(client, "SN-T-1", gateway=tight_gateway.uid).status_code == 201
    response = enroll(client, "SN-T-2", gateway=tight_gateway.uid)
    assert response.status_code == 409
    data = response.json()
    assert data["code"] == "capacity_exceeded" and data["seats_free"] == 0
    assert KEY not in response.content.decode()
    assert list(
        EnrollmentRecord.objects.for_organization(tight).values_list("serial_number", flat=True)
    ) == ["SN-T-1"]
    assert not Device.objects.filter(serial_number="SN-T-2").exists()
    # the same request works once a seat is free
    make_license(tight, seats=1)
    assert enroll(client, "SN-T-2", gateway=tight_gateway.uid).status_code == 201
    assert not EnrollmentRecord.objects.for_organization(other).exists()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"serial_number": "has spaces"}, "serial_number", "printable characters"),
        ({"serial_number": ""}, "serial_number", "blank"),
        ({"access_key": "abc"}, "access_key", "4 to 128"),
        ({"device_type": "Toaster"}, "device_type", "No such device type"),
        ({"gateway": "gw-unknown"}, "gateway", "No such gateway"),
        ({"gateway": ""}, "gateway", "blank"),
    ],
)
def test_field_errors_are_400(thermostat, gateway, installer, change, field, message):
    response = installer.post(ENROLLMENTS, body() | change, format="json")
    assert response.status_code == 400
    assert message in " ".join(response.json()[field])
    assert not EnrollmentRecord.objects.exists()


def test_missing_fields_are_400(installer):
    response = installer.post(ENROLLMENTS, {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"serial_number", "access_key", "device_type", "gateway"}


def test_another_organizations_gateway_is_a_field_error(thermostat, installer):
    theirs = make_gateway(make_organization(), uid="gw-theirs")
    for value in (theirs.uid, theirs.pk):
        response = enroll(installer, gateway=value)
        assert response.status_code == 400
        assert response.json()["gateway"] == ["No such gateway in this organization."]
    assert not EnrollmentRecord.objects.exists()


def test_an_enrolled_or_pending_serial_is_refused(org, thermostat, gateway, installer):
    row = {"serial_number": "SN-TWICE", "access_key": KEY, "device_type": thermostat}
    services.create(org, None, [row | {"gateway": gateway}])  # pending, not sent yet
    response = enroll(installer, "SN-TWICE")
    assert response.status_code == 400
    assert response.json()["serial_number"] == [services.ALREADY_REQUESTED]
    assert enroll(installer, "SN-SENT").status_code == 201
    assert enroll(installer, "SN-SENT").json()["serial_number"] == [services.ALREADY_ENROLLED]
    make_device(org, thermostat, serial_number="SN-DONE", state=S.PROVISIONED)
    response = enroll(installer, "SN-DONE")
    assert response.json()["serial_number"] == [services.ALREADY_ENROLLED]


@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
def test_create_follows_the_enroll_rule(org, thermostat, gateway, roles):
    client = api_client(make_member(org, roles))
    response = enroll(client)
    if permissions.allows("enroll", roles):
        assert response.status_code == 201
        assert EnrollmentRecord.objects.count() == 1
    else:
        assert response.status_code == 403
        assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()


@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
def test_app_enrollment_follows_the_enroll_rule(org, thermostat, roles):
    client = api_client(make_member(org, roles))
    response = client.post(APP, body() | {"gateway": "ignored"}, format="json")
    if permissions.allows("enroll", roles):
        assert response.status_code == 201
    else:
        assert response.status_code == 403
        assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()


def test_anonymous_is_401(thermostat, gateway):
    assert APIClient().post(ENROLLMENTS, body(), format="json").status_code == 401
    assert not EnrollmentRecord.objects.exists()


# -- app-only --------------------------------------------------------------------------


def test_app_only_enrollment_is_done_at_once_with_no_gateway(org, thermostat, installer):
    data = body("SN-BLE-1")
    del data["gateway"]
    response = installer.post(APP, data, format="json")
    assert response.status_code == 201, response.content
    result = response.json()
    assert result["app_only"] and result["gateway"] is None and result["status"] == "done"
    assert KEY not in response.content.decode()
    device = Device.objects.get(serial_number="SN-BLE-1")
    assert device.organization == org and device.state == S.PROVISIONED
    assert device.gateway is None and device.location == "Hall, 2nd floor"


def test_app_only_enrollment_of_a_discovered_device(org, thermostat, gateway, installer):
    device = make_device(org, thermostat, serial_number="SN-BLE-2", gateway=gateway)
    response = installer.post(APP, body("SN-BLE-2"), format="json")
    assert response.status_code == 201
    device.refresh_from_db()
    assert device.state == S.PROVISIONED
    assert response.json()["device"] == device.pk


def test_app_only_over_capacity_is_409(thermostat):
    tight = make_organization()
    client = api_client(make_member(tight, [Role.ADMINISTRATOR]))  # no license at all
    response = client.post(APP, body("SN-BLE-3"), format="json")
    assert response.status_code == 409 and response.json()["code"] == "capacity_exceeded"
    assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()


def test_app_only_field_errors(thermostat, installer):
    response = installer.post(APP, body("bad serial", device_type="Nope"), format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"serial_number", "device_type"}


# -- list and retrieve -----------------------------------------------------------------


def test_list_is_scoped_filtered_and_open_to_viewers(org, thermostat, gateway, installer, viewer):
    enroll(installer, "SN-L-1")
    enroll(installer, "SN-L-2")
    theirs = make_organization()
    make_license(theirs)
    services.create(
        theirs,
        None,
        [
            {
                "serial_number": "SN-THEIRS",
                "access_key": "abcd",
                "device_type": thermostat,
                "gateway": None,
            }
        ],
    )
    response = viewer.get(ENROLLMENTS)
    assert response.status_code == 200
    serials = [r["serial_number"] for r in response.json()["results"]]
    assert serials == ["SN-L-2", "SN-L-1"]
    assert viewer.get(ENROLLMENTS, {"q": "l-2"}).json()["count"] == 1
    assert viewer.get(ENROLLMENTS, {"status": "done"}).json()["count"] == 0
    assert viewer.get(ENROLLMENTS, {"status": "nope"}).status_code == 400
    their_record = EnrollmentRecord.objects.get(serial_number="SN-THEIRS")
    assert viewer.get(reverse("api:enrollment-detail", args=[their_record.pk])).status_code == 404


def test_a_viewer_cannot_enroll(thermostat, gateway, viewer):
    assert enroll(viewer).status_code == 403


# -- photos ----------------------------------------------------------------------------


def test_photo_is_stored_without_metadata_and_served_to_the_organization(
    org, thermostat, gateway, installer, viewer
):
    record_id = enroll(installer).json()["id"]
    url = reverse("api:enrollment-photo", args=[record_id])
    assert viewer.get(url).status_code == 404  # no photo yet
    response = installer.post(url, {"photo": io.BytesIO(gps_jpeg())}, format="multipart")
    assert response.status_code == 200, response.content
    assert response.json()["has_photo"] and response.json()["photo_url"] == url
    record = EnrollmentRecord.objects.get(pk=record_id)
    with record.photo.open("rb") as file:
        stored = file.read()
    assert b"GPS" not in stored and b"PhoneMaker" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    served = viewer.get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert b"".join(served.streaming_content) == stored
    # another organization's member sees none of it
    stranger = api_client(make_member(make_organization(), [Role.ADMINISTRATOR]))
    assert stranger.get(url).status_code == 404
    assert (
        stranger.post(url, {"photo": io.BytesIO(gps_jpeg())}, format="multipart").status_code == 404
    )


def test_a_new_photo_replaces_the_old_file(thermostat, gateway, installer):
    record_id = enroll(installer).json()["id"]
    url = reverse("api:enrollment-photo", args=[record_id])
    installer.post(url, {"photo": io.BytesIO(gps_jpeg())}, format="multipart")
    first = EnrollmentRecord.objects.get(pk=record_id).photo
    installer.post(url, {"photo": io.BytesIO(gps_jpeg((300, 200)))}, format="multipart")
    second = EnrollmentRecord.objects.get(pk=record_id).photo
    assert first.name != second.name
    assert not first.storage.exists(first.name) and second.storage.exists(second.name)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an image", "not an image"),
        (bomb_png(), "too large"),
        (None, "Choose a file"),
    ],
    ids=["non-image", "bomb", "missing"],
)
def test_a_bad_photo_is_400_and_nothing_is_stored(thermostat, gateway, installer, data, message):
    record_id = enroll(installer).json()["id"]
    url = reverse("api:enrollment-photo", args=[record_id])
    payload = {} if data is None else {"photo": io.BytesIO(data)}
    response = installer.post(url, payload, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["photo"][0]
    assert not EnrollmentRecord.objects.get(pk=record_id).photo


def test_a_viewer_cannot_add_a_photo(thermostat, gateway, installer, viewer):
    record_id = enroll(installer).json()["id"]
    url = reverse("api:enrollment-photo", args=[record_id])
    assert (
        viewer.post(url, {"photo": io.BytesIO(gps_jpeg())}, format="multipart").status_code == 403
    )


# -- decode-qr -------------------------------------------------------------------------


def test_decode_qr_says_serial_and_type_never_the_key(org, thermostat, installer):
    response = installer.post(
        DECODE, {"image": io.BytesIO(label_photo("SN-QR-1", angle=12))}, format="multipart"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "serial_number": "SN-QR-1",
        "device_type": "Thermostat",
        "device_type_id": thermostat.pk,
        "has_key": True,
        "refusal": None,
    }
    assert KEY not in response.content.decode()
    assert not EnrollmentRecord.objects.exists()


def test_decode_qr_says_when_the_device_is_enrolled_already(org, thermostat, installer):
    make_device(org, thermostat, serial_number="SN-QR-2", state=S.PROVISIONED)
    response = installer.post(
        DECODE, {"image": io.BytesIO(label_photo("SN-QR-2"))}, format="multipart"
    )
    assert response.json()["refusal"] == services.ALREADY_ENROLLED


def jpeg(image):
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (jpeg(noisy_background()), "No QR code was found"),
        (b"%PDF-1.7 not an image", "not an image"),
        (bomb_png(), "too large"),
        (qr_photo("WIFI:S:home;T:WPA;P:secret;;"), "not a Fleetgate enrollment label"),
        (qr_photo("FG1;S=SN1;K=abcd"), "lacks T"),
    ],
    ids=["no-code", "non-image", "bomb", "wrong-payload", "incomplete-payload"],
)
def test_decode_qr_refuses_bad_images_clearly(installer, data, message):
    response = installer.post(DECODE, {"image": io.BytesIO(data)}, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["image"][0]


def test_decode_qr_needs_the_enroll_rule(viewer):
    response = viewer.post(DECODE, {"image": io.BytesIO(label_photo())}, format="multipart")
    assert response.status_code == 403


# -- nearby ----------------------------------------------------------------------------


def test_nearby_lists_discovered_devices_of_this_organization_recent_first(
    org, thermostat, gateway, installer
):
    now = timezone.now()
    other_gateway = make_gateway(org, uid="gw-cellar", name="Cellar")
    old = make_device(
        org, thermostat, serial_number="SN-N-OLD", gateway=gateway, last_seen=now.replace(year=2020)
    )
    new = make_device(
        org, thermostat, serial_number="SN-N-NEW", gateway=other_gateway, last_seen=now
    )
    never = make_device(org, thermostat, serial_number="SN-N-NEVER", gateway=gateway)
    make_device(org, thermostat, serial_number="SN-N-NOGW")  # no gateway reported it
    make_device(org, thermostat, serial_number="SN-N-PROV", gateway=gateway, state=S.PROVISIONED)
    theirs = make_organization()
    make_device(theirs, thermostat, serial_number="SN-N-THEIRS", gateway=make_gateway(theirs))
    response = installer.get(NEARBY)
    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == [new.pk, old.pk, never.pk]
    assert "SN-N-THEIRS" not in response.content.decode()
    by_uid = installer.get(NEARBY, {"gateway": "gw-roof"}).json()["results"]
    assert [d["serial_number"] for d in by_uid] == ["SN-N-OLD", "SN-N-NEVER"]
    by_id = installer.get(NEARBY, {"gateway": other_gateway.pk}).json()["results"]
    assert [d["serial_number"] for d in by_id] == ["SN-N-NEW"]
    assert by_id[0]["gateway"] == {"id": other_gateway.pk, "name": "Cellar", "uid": "gw-cellar"}
    foreign = installer.get(NEARBY, {"gateway": theirs.gateways.get().uid})
    assert foreign.status_code == 400


def test_nearby_needs_the_enroll_rule(viewer):
    assert viewer.get(NEARBY).status_code == 403


# -- retry -----------------------------------------------------------------------------


def test_retry_sends_a_failed_enrollment_again(org, thermostat, gateway, installer):
    record_id = enroll(installer).json()["id"]
    EnrollmentRecord.objects.filter(pk=record_id).update(
        status=EnrollmentStatus.FAILED, reason="timeout"
    )
    Device.objects.filter(serial_number="SN-API-1").update(state=S.FAILED)
    response = installer.post(reverse("api:enrollment-retry", args=[record_id]))
    assert response.status_code == 200, response.content
    assert response.json()["status"] in ("in_progress", "failed")
    assert KEY not in response.content.decode()


def test_only_failed_gateway_enrollments_can_be_retried(thermostat, gateway, installer):
    record_id = enroll(installer).json()["id"]
    response = installer.post(reverse("api:enrollment-retry", args=[record_id]))
    assert response.status_code == 409 and response.json()["code"] == "not_retryable"
