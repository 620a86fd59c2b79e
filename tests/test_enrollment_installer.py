"""The installer's phone pages (scan, details, result) and the QR label sheets."""

import io

import pytest
import zxingcpp
from django.contrib.auth import get_user_model
from django.urls import reverse
from PIL import ExifTags, Image

from devices.choices import DeviceState as S
from devices.models import Device
from enrollment import qr, services
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentBatch, EnrollmentRecord
from enrollment.views.installer import DRAFT_KEY
from portal import permissions
from portal.choices import Role
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_license,
    make_member,
    make_membership,
    make_organization,
)
from tests.test_enrollment_qr import (
    KEY,
    bomb_png,
    gps_jpeg,
    label_photo,
    noisy_background,
    qr_photo,
)
from tests.test_isolation import COMBINATIONS, _combo_id

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"enrollment:{name}", args=args)


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
def installer(client, org):
    client.force_login(make_member(org, [Role.DEVICE_MANAGER, Role.IOT_MANAGER]))
    return client


def photo_file(data, name="photo.jpg"):
    file = io.BytesIO(data)
    file.name = name
    return file


def scan(client, data=None):
    data = data if data is not None else label_photo("SN-INST-1", key=KEY)
    return client.post(url("installer-scan"), {"image": photo_file(data)})


def details(gateway_choice, thermostat, serial="SN-INST-1", **extra):
    return {
        "serial_number": serial,
        "device_type": thermostat.pk,
        "name": "Hall thermostat",
        "location_note": "Hall, above the door",
        "gateway": gateway_choice,
    } | extra


# -- the happy path --------------------------------------------------------------------


def test_the_scan_page_is_made_for_a_phone(installer, org, gateway, thermostat):
    response = installer.get(url("installer-scan"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'capture="environment"' in page and 'accept="image/*"' in page
    assert 'name="viewport"' in page and 'aria-current="step"' in page


def test_scan_photo_enroll_and_watch_it_finish(installer, org, gateway, thermostat):
    response = scan(installer)
    assert response.status_code == 302 and response["Location"] == url("installer-enroll")
    token = installer.session[DRAFT_KEY]
    assert token.startswith("fernet:") and KEY not in token  # encrypted, server-side

    page = installer.get(url("installer-enroll")).content.decode()
    assert 'value="SN-INST-1"' in page and "read from the label" in page
    assert KEY not in page
    assert f'value="{thermostat.pk}" selected' in page
    assert 'capture="environment"' in page and 'value="app"' in page

    response = installer.post(
        url("installer-enroll"),
        details(gateway.pk, thermostat) | {"photo": photo_file(gps_jpeg())},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    record = EnrollmentRecord.objects.get()
    assert response["Location"] == url("installer-result", record.pk)
    assert record.access_key == KEY and record.status == EnrollmentStatus.IN_PROGRESS
    assert record.gateway == gateway and record.location_note == "Hall, above the door"
    assert record.device.state == S.ENROLLING
    with record.photo.open("rb") as file:
        stored = file.read()
    with Image.open(io.BytesIO(stored)) as image:
        assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert b"GPS" not in stored
    assert DRAFT_KEY not in installer.session

    page = installer.get(url("installer-result", record.pk)).content.decode()
    assert 'hx-trigger="every 2s"' in page and url("installer-status", record.pk) in page
    assert reverse("api:enrollment-photo", args=[record.pk]) in page
    assert KEY not in page and "In progress" in page

    EnrollmentRecord.objects.filter(pk=record.pk).update(status=EnrollmentStatus.DONE)
    status = installer.get(url("installer-status", record.pk), HTTP_HX_REQUEST="true")
    assert status.status_code == 200
    body = status.content.decode()
    assert "under management" in body and "hx-trigger" not in body  # polling stops


def test_enrolled_by_the_app_needs_no_gateway(installer, org, gateway, thermostat):
    scan(installer)
    response = installer.post(url("installer-enroll"), details("app", thermostat))
    assert response.status_code == 302
    record = EnrollmentRecord.objects.get()
    assert record.app_only and record.gateway is None and record.status == EnrollmentStatus.DONE
    assert record.device.state == S.PROVISIONED
    page = installer.get(url("installer-result", record.pk)).content.decode()
    assert "the app (BLE)" in page and "hx-trigger" not in page


def test_pick_a_device_nearby_and_type_its_key(installer, org, gateway, thermostat):
    device = make_device(org, thermostat, serial_number="SN-NEAR-1", gateway=gateway)
    make_device(org, thermostat, serial_number="SN-NEAR-PROV", gateway=gateway, state=S.PROVISIONED)
    page = installer.get(url("installer-scan")).content.decode()
    assert f"{url('installer-enroll')}?device={device.pk}" in page
    assert "SN-NEAR-PROV" not in page
    partial = installer.get(url("installer-nearby"), HTTP_HX_REQUEST="true").content.decode()
    assert "SN-NEAR-1" in partial and "<html" not in partial

    page = installer.get(url("installer-enroll"), {"device": device.pk}).content.decode()
    assert 'value="SN-NEAR-1"' in page and 'name="access_key"' in page
    assert f'value="{gateway.pk}" checked' in page
    response = installer.post(
        url("installer-enroll"),
        details(gateway.pk, thermostat, "SN-NEAR-1", access_key="typed-key-123"),
    )
    assert response.status_code == 302
    record = EnrollmentRecord.objects.get()
    assert record.access_key == "typed-key-123" and record.device == device


# -- flaky connections and bad input ---------------------------------------------------


def test_a_failed_photo_upload_is_retried_without_entering_anything_again(
    installer, org, gateway, thermostat
):
    scan(installer)
    data = details(gateway.pk, thermostat)
    response = installer.post(
        url("installer-enroll"), data | {"photo": photo_file(b"not a photo at all")}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "not an image" in page
    for value in ("SN-INST-1", "Hall thermostat", "Hall, above the door"):
        assert f'value="{value}"' in page
    assert f'value="{gateway.pk}" checked' in page
    assert "read from the label" in page and KEY not in page
    assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()

    response = installer.post(url("installer-enroll"), data | {"photo": photo_file(gps_jpeg())})
    assert response.status_code == 302
    record = EnrollmentRecord.objects.get()
    assert record.access_key == KEY and record.photo


def test_a_typed_key_is_kept_for_the_next_try(installer, org, gateway, thermostat):
    device = make_device(org, thermostat, serial_number="SN-NEAR-2", gateway=gateway)
    installer.get(url("installer-enroll"), {"device": device.pk})
    data = details(gateway.pk, thermostat, "SN-NEAR-2")
    response = installer.post(
        url("installer-enroll"),
        data | {"access_key": "typed-key-456", "photo": photo_file(bomb_png(), "bomb.png")},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "too large" in page and "typed-key-456" not in page
    assert 'name="access_key"' not in page and "as you typed it" in page  # kept server-side
    assert not EnrollmentRecord.objects.exists()
    assert installer.post(url("installer-enroll"), data).status_code == 302
    assert EnrollmentRecord.objects.get().access_key == "typed-key-456"


def jpeg(image):
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


BAD_SCANS = {
    "no-code": (lambda: jpeg(noisy_background()), "No QR code was found"),
    "broken": (lambda: label_photo()[:5000], "damaged or incomplete"),
    "non-image": (lambda: b"plain text", "not an image"),
    "bomb": (bomb_png, "too large"),
    "wrong-payload": (lambda: qr_photo("FG1;S=SN1;K=abcd"), "lacks T"),
    "other-code": (lambda: qr_photo("https://example.com/"), "not a Fleetgate"),
}


@pytest.mark.parametrize("case", BAD_SCANS)
def test_a_bad_scan_says_why_and_stores_nothing(installer, org, case):
    make, message = BAD_SCANS[case]
    response = scan(installer, make())
    assert response.status_code == 400
    assert message in response.content.decode()
    assert DRAFT_KEY not in installer.session


def test_a_scan_without_a_file_is_a_clear_error(installer, org):
    response = installer.post(url("installer-scan"), {})
    assert response.status_code == 400 and "Take a photo" in response.content.decode()


def test_field_errors_keep_the_form(installer, org, gateway, thermostat):
    scan(installer)
    response = installer.post(url("installer-enroll"), details("", thermostat, "bad serial"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "printable characters" in page and 'value="bad serial"' in page
    assert not EnrollmentRecord.objects.exists()


def test_over_capacity_stores_nothing_and_says_so(client, thermostat):
    org = make_organization()  # no license: no seat
    gateway = make_gateway(org, is_online=True)
    client.force_login(make_member(org, [Role.ADMINISTRATOR]))
    scan(client)
    response = client.post(url("installer-enroll"), details(gateway.pk, thermostat))
    assert response.status_code == 409
    assert "Not enrolled" in response.content.decode()
    assert not EnrollmentRecord.objects.exists() and not Device.objects.exists()
    assert DRAFT_KEY in client.session  # ready for another try


def test_a_failed_enrollment_has_a_retry_button(installer, org, gateway, thermostat):
    scan(installer)
    installer.post(url("installer-enroll"), details(gateway.pk, thermostat))
    record = EnrollmentRecord.objects.get()
    EnrollmentRecord.objects.filter(pk=record.pk).update(
        status=EnrollmentStatus.FAILED, reason="The gateway timed out."
    )
    Device.objects.filter(pk=record.device_id).update(state=S.FAILED)
    page = installer.get(url("installer-result", record.pk)).content.decode()
    assert "The gateway timed out." in page and url("installer-retry", record.pk) in page
    response = installer.post(url("installer-retry", record.pk))
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == EnrollmentStatus.IN_PROGRESS and record.reason == ""
    again = installer.post(url("installer-retry", record.pk), HTTP_HX_REQUEST="true")
    assert "Only a failed enrollment" in again.content.decode()


# -- rules and organizations -----------------------------------------------------------


@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
def test_every_installer_page_follows_the_enroll_rule(client, org, gateway, thermostat, roles):
    client.force_login(make_member(org, roles))
    allowed = permissions.allows("enroll", roles)
    [record] = services.create(
        org,
        None,
        [
            {
                "serial_number": "SN-RULE-0",
                "access_key": "abcd",
                "device_type": thermostat,
                "gateway": gateway,
            }
        ],
    )
    pages = [
        url("installer-scan"),
        url("installer-nearby"),
        url("installer-enroll"),
        url("installer-result", record.pk),
        url("installer-status", record.pk),
        url("labels"),
    ]
    for page in pages:
        assert client.get(page).status_code == (200 if allowed else 403), page
    response = client.post(
        url("installer-enroll"),
        details(gateway.pk, thermostat, "SN-RULE-1", access_key="abcd-1234"),
    )
    assert response.status_code == (302 if allowed else 403)
    assert scan(client).status_code == (302 if allowed else 403)
    assert EnrollmentRecord.objects.filter(serial_number="SN-RULE-1").exists() == allowed


def test_another_organizations_records_and_devices_are_404(installer, org, thermostat):
    theirs = make_organization()
    their_gateway = make_gateway(theirs)
    [record] = services.create(
        theirs,
        None,
        [
            {
                "serial_number": "SN-THEIRS",
                "access_key": "abcd",
                "device_type": thermostat,
                "gateway": their_gateway,
            }
        ],
    )
    device = make_device(theirs, thermostat, serial_number="SN-THEIR-DEV", gateway=their_gateway)
    for name in ("installer-result", "installer-status"):
        assert installer.get(url(name, record.pk)).status_code == 404
    assert installer.post(url("installer-retry", record.pk)).status_code == 404
    response = installer.get(url("installer-enroll"), {"device": device.pk})
    assert response.status_code == 404
    assert "SN-THEIR-DEV" not in installer.get(url("installer-scan")).content.decode()
    assert installer.get(url("installer-nearby"), {"gateway": their_gateway.pk}).status_code == 404


def test_a_draft_does_not_follow_the_user_to_another_organization(installer, org, thermostat):
    scan(installer)
    other = make_organization()
    user = get_user_model().objects.get(pk=installer.session["_auth_user_id"])
    make_membership(user, other, [Role.ADMINISTRATOR])
    installer.post(reverse("switch-organization"), {"organization": other.pk})
    page = installer.get(url("installer-enroll")).content.decode()
    assert "SN-INST-1" not in page and "read from the label" not in page


# -- label sheets ----------------------------------------------------------------------


def make_records(org, thermostat, gateway, n, batch=None, prefix="SN-LBL"):
    rows = [
        {
            "serial_number": f"{prefix}-{i:03d}",
            "access_key": f"key-{prefix}-{i:03d}",
            "device_type": thermostat,
            "gateway": gateway,
        }
        for i in range(n)
    ]
    return services.create(org, None, rows, batch=batch)


def test_labels_of_chosen_records_as_a_pdf(installer, org, gateway, thermostat):
    records = make_records(org, thermostat, gateway, 3)
    ids = ",".join(str(r.pk) for r in records[:2])
    response = installer.get(url("labels"), {"ids": ids})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="labels-2.pdf"'
    assert response["Cache-Control"] == "no-store"
    assert response.content.startswith(b"%PDF-")
    entry = AuditEntry.objects.get(action="enrollment.labels")
    assert sorted(entry.object_ids) == sorted(r.pk for r in records[:2])


def test_labels_of_a_batch_as_a_png_decode_to_their_payloads(installer, org, gateway, thermostat):
    batch = EnrollmentBatch.objects.create(organization=org, source="pasted", rows=4, accepted=4)
    make_records(org, thermostat, gateway, 4, batch=batch)
    make_records(org, thermostat, gateway, 2, prefix="SN-OTHER")  # not in the batch
    response = installer.get(url("labels"), {"batch": batch.pk, "format": "png"})
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(response.content)) as page:
        found = zxingcpp.read_barcodes(page.convert("L"))
    payloads = sorted((qr.parse(code.text) for code in found), key=lambda p: p.serial_number)
    assert payloads == [
        qr.Payload(f"SN-LBL-{i:03d}", f"key-SN-LBL-{i:03d}", "Thermostat") for i in range(4)
    ]


def test_labels_stay_in_the_organization(installer, org, thermostat):
    theirs = make_organization()
    their_gateway = make_gateway(theirs)
    batch = EnrollmentBatch.objects.create(organization=theirs, source="x")
    records = make_records(theirs, thermostat, their_gateway, 2, batch=batch)
    assert installer.get(url("labels"), {"batch": batch.pk}).status_code == 404
    ids = ",".join(str(r.pk) for r in records)
    assert installer.get(url("labels"), {"ids": ids}).status_code == 404
    assert not AuditEntry.objects.filter(action="enrollment.labels").exists()


def test_labels_need_the_enroll_rule(client, org, gateway, thermostat):
    records = make_records(org, thermostat, gateway, 1)
    client.force_login(make_member(org, [Role.DEVICE_MANAGER]))
    assert client.get(url("labels"), {"ids": records[0].pk}).status_code == 403


def test_the_labels_page_and_its_errors(installer, org, gateway, thermostat):
    records = make_records(org, thermostat, gateway, 16)
    page = installer.get(url("labels"))
    assert page.status_code == 200 and 'name="batch"' in page.content.decode()
    assert installer.get(url("labels"), {"ids": "1,x"}).status_code == 400
    ids = ",".join(str(r.pk) for r in records)
    response = installer.get(url("labels"), {"ids": ids, "format": "png"})
    assert response.status_code == 400 and "choose PDF" in response.content.decode()
    assert installer.get(url("labels"), {"ids": ids, "format": "svg"}).status_code == 400
