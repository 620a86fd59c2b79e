"""Licensing: signed license files, capacity and reservations, the Licenses widget, admin, commands."""

import base64
import json
import uuid
from datetime import date, timedelta
from io import StringIO

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from devices import lifecycle
from devices.lifecycle import LICENSED_STATES
from devices.models import Device
from licensing import capacity, signing
from licensing.apps import check_license_public_key
from licensing.capacity import CapacityExceeded
from licensing.keys import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY
from licensing.models import License
from licensing.signing import LicenseError
from portal import widgets
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry
from tests.factories import (
    make_device,
    make_device_type,
    make_member,
    make_membership,
    make_organization,
    make_staff,
)

pytestmark = [pytest.mark.django_db]

ADMIN = Role.ADMINISTRATOR.value
DM = Role.DEVICE_MANAGER.value
IOT = Role.IOT_MANAGER.value
TODAY = date(2026, 3, 15)
OTHER_KEY = Ed25519PrivateKey.generate()


def fields(org_slug="acme", **overrides):
    return {
        "organization": org_slug,
        "organization_name": "Acme Corp",
        "capacity": 10,
        "valid_from": TODAY - timedelta(days=30),
        "valid_until": TODAY + timedelta(days=335),
        **overrides,
    }


def license_file(org_slug="acme", key=DEMO_PRIVATE_KEY, **overrides) -> bytes:
    return signing.issue(key, fields(org_slug, **overrides))


def signed_document(**changes) -> bytes:
    """A properly signed file whose contents ``issue`` would refuse to write."""
    document = json.loads(license_file())
    document.pop("signature")
    document.update(changes)
    return signing.sign_document(DEMO_PRIVATE_KEY, document)


def verify(data, **kwargs):
    kwargs.setdefault("organization", "acme")
    kwargs.setdefault("today", TODAY)
    return signing.verify(data, DEMO_PUBLIC_KEY, **kwargs)


def make_license(organization, capacity=10, valid_from=None, valid_until=None, **extra):
    """A stored license, made from a genuinely signed file (as an upload would)."""
    valid_from = valid_from or timezone.localdate() - timedelta(days=1)
    valid_until = valid_until or timezone.localdate() + timedelta(days=365)
    data = license_file(
        organization.slug, capacity=capacity, valid_from=valid_from, valid_until=valid_until
    )
    claims = signing.verify(data, DEMO_PUBLIC_KEY, today=valid_from)
    row = License.from_claims(organization, claims, data.decode(), **extra)
    row.full_clean()
    row.save()
    return row


def count_licensed(organization):
    """The counter the devices app registers: devices holding a seat."""
    return Device.objects.for_organization(organization).filter(state__in=LICENSED_STATES).count()


@pytest.fixture
def counter():
    """Register the used counter as the devices app will, and restore what was there."""
    previous = capacity.get_used_counter()
    capacity.set_used_counter(count_licensed)
    yield count_licensed
    capacity.set_used_counter(previous)


@pytest.fixture
def org():
    return make_organization("Acme", slug="acme")


@pytest.fixture
def other_org():
    return make_organization("Globex", slug="globex")


@pytest.fixture
def admin_user(org):
    return make_member(org, [ADMIN], username="alice")


def make_devices(organization, states):
    device_type = make_device_type()
    return [make_device(organization, device_type, state=state) for state in states]


# --- signing: the round trip -------------------------------------------------------------


def test_issue_and_verify_round_trip():
    data = license_file(capacity=25, license_id="3f0c5e0a-4d0e-4a57-9d7e-2b1f3f0f6a11")
    claims = verify(data)
    assert claims.license_id == uuid.UUID("3f0c5e0a-4d0e-4a57-9d7e-2b1f3f0f6a11")
    assert claims.organization == "acme" and claims.organization_name == "Acme Corp"
    assert claims.capacity == 25
    assert claims.valid_from == TODAY - timedelta(days=30)
    assert claims.valid_until == TODAY + timedelta(days=335)
    assert claims.issued_at.tzinfo is not None


def test_the_file_is_readable_json_with_every_documented_field():
    document = json.loads(license_file())
    assert list(document) == [*signing.SIGNED_FIELDS, "signature"]
    assert document["format"] == signing.FORMAT
    uuid.UUID(document["license_id"])
    assert len(base64.b64decode(document["signature"])) == 64


def test_layout_of_the_file_does_not_matter_only_its_values():
    document = json.loads(license_file())
    reordered = dict(reversed(list(document.items())))
    assert verify(json.dumps(reordered).encode()).capacity == 10
    assert verify(b"\xef\xbb\xbf" + license_file()).capacity == 10  # a BOM from an editor


def test_the_signature_covers_the_documented_canonical_bytes():
    document = json.loads(license_file())
    signature = base64.b64decode(document.pop("signature"))
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    message = b"fleetgate-license/1\n" + body.encode("ascii")
    signing.load_public_key(DEMO_PUBLIC_KEY).verify(signature, message)  # raises if not


def test_each_issue_gets_a_new_license_id():
    first, second = verify(license_file()), verify(license_file())
    assert first.license_id != second.license_id


def test_validity_days_are_inclusive():
    data = license_file(valid_from=TODAY, valid_until=TODAY)
    assert verify(data, today=TODAY).capacity == 10


def test_non_ascii_organization_names_survive():
    data = license_file(organization_name="Zürich Wärme AG")
    assert verify(data).organization_name == "Zürich Wärme AG"


def test_issue_refuses_a_license_no_portal_would_accept():
    with pytest.raises(LicenseError) as error:
        license_file(capacity=0)
    assert error.value.code == LicenseError.BAD_CAPACITY
    with pytest.raises(LicenseError, match="ends"):
        license_file(valid_from=TODAY, valid_until=TODAY - timedelta(days=1))
    with pytest.raises(ValueError, match="Unknown license field"):
        signing.issue(DEMO_PRIVATE_KEY, {**fields(), "seats": 3})


# --- signing: every refusal, with its reason --------------------------------------------


def tampered_capacity() -> bytes:
    document = json.loads(license_file())
    document["capacity"] = 10_000
    return json.dumps(document).encode()


def forged() -> bytes:
    return license_file(key=OTHER_KEY)


REFUSALS = {
    # name: (make the file, code, words the reason must contain)
    "forged": (forged, LicenseError.BAD_SIGNATURE, "not issued by the vendor"),
    "tampered": (tampered_capacity, LicenseError.BAD_SIGNATURE, "changed after it was issued"),
    "expired": (
        lambda: license_file(valid_from=date(2025, 1, 1), valid_until=date(2025, 12, 31)),
        LicenseError.EXPIRED,
        "expired: its last valid day was 2025-12-31",
    ),
    "not yet valid": (
        lambda: license_file(valid_from=date(2026, 4, 1), valid_until=date(2027, 3, 31)),
        LicenseError.NOT_YET_VALID,
        "not valid yet: it starts on 2026-04-01",
    ),
    "other organization": (
        lambda: license_file("globex", organization_name="Globex Inc"),
        LicenseError.WRONG_ORGANIZATION,
        "for another organization (Globex Inc, “globex”)",
    ),
    "not json": (lambda: b"hello", LicenseError.MALFORMED, "not JSON"),
    "not utf-8": (lambda: b"\xff\xfe{}", LicenseError.MALFORMED, "not UTF-8"),
    "a list": (lambda: b"[1, 2]", LicenseError.MALFORMED, "not a JSON object"),
    "empty": (lambda: b"", LicenseError.MALFORMED, "not JSON"),
    "missing field": (
        lambda: json.dumps({"format": signing.FORMAT}).encode(),
        LicenseError.MALFORMED,
        "'license_id' is missing",
    ),
    "unknown field": (
        lambda: json.dumps({**json.loads(license_file()), "seats": 5}).encode(),
        LicenseError.MALFORMED,
        "unknown field 'seats'",
    ),
    "duplicate field": (
        lambda: license_file().replace(b'"capacity": 10', b'"capacity": 10, "capacity": 99'),
        LicenseError.MALFORMED,
        "'capacity' appears twice",
    ),
    "signature not base64": (
        lambda: json.dumps({**json.loads(license_file()), "signature": "!!"}).encode(),
        LicenseError.MALFORMED,
        "not a base64 Ed25519 signature",
    ),
    "other format": (
        lambda: json.dumps({**json.loads(license_file()), "format": "other/9"}).encode(),
        LicenseError.MALFORMED,
        "format is 'other/9'",
    ),
    "NaN": (
        lambda: license_file().replace(b'"capacity": 10', b'"capacity": NaN'),
        LicenseError.MALFORMED,
        "NaN",
    ),
    "signed but a bad date": (
        lambda: signed_document(valid_until="next year"),
        LicenseError.MALFORMED,
        "valid_until is not a date",
    ),
    "signed but a bad id": (
        lambda: signed_document(license_id="seven"),
        LicenseError.MALFORMED,
        "license_id is not a UUID",
    ),
    "too large": (
        lambda: b" " * signing.MAX_FILE_BYTES + license_file(),
        LicenseError.TOO_LARGE,
        "too large",
    ),
    "capacity zero": (
        lambda: signed_document(capacity=0),
        LicenseError.BAD_CAPACITY,
        "positive whole number of devices, not 0",
    ),
    "capacity negative": (lambda: signed_document(capacity=-5), LicenseError.BAD_CAPACITY, "-5"),
    "capacity text": (lambda: signed_document(capacity="10"), LicenseError.BAD_CAPACITY, "'10'"),
    "capacity fraction": (lambda: signed_document(capacity=1.5), LicenseError.BAD_CAPACITY, "1.5"),
    "capacity boolean": (lambda: signed_document(capacity=True), LicenseError.BAD_CAPACITY, "True"),
    "capacity absurd": (
        lambda: signed_document(capacity=10**12),
        LicenseError.BAD_CAPACITY,
        "beyond",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_verify_refuses_with_a_clear_reason(case):
    make, code, words = REFUSALS[case]
    with pytest.raises(LicenseError) as error:
        verify(make())
    assert error.value.code == code
    assert words in error.value.reason
    assert str(error.value) == error.value.reason


def test_already_used_asks_the_caller_and_says_which_license():
    data = license_file()
    license_id = verify(data).license_id
    with pytest.raises(LicenseError) as error:
        verify(data, is_used=lambda seen: seen == license_id)
    assert error.value.code == LicenseError.ALREADY_USED
    assert f"This license ({license_id}) has already been uploaded" in error.value.reason


def test_the_signature_is_checked_before_anything_unsigned_is_believed():
    """A forged file for another organization is called forged, not "other organization"."""
    data = license_file(
        "globex", key=OTHER_KEY, valid_until=date(2000, 1, 1), valid_from=date(1999, 1, 1)
    )
    with pytest.raises(LicenseError) as error:
        verify(data)
    assert error.value.code == LicenseError.BAD_SIGNATURE


def test_key_loading_explains_bad_keys():
    assert signing.public_key_b64(signing.load_private_key(DEMO_PRIVATE_KEY)) == DEMO_PUBLIC_KEY
    for bad in ("", "not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(signing.LicenseKeyError):
            signing.load_public_key(bad)
        with pytest.raises(signing.LicenseKeyError):
            signing.load_private_key(bad)


def test_private_keys_load_from_pem_too():
    from cryptography.hazmat.primitives import serialization

    pem = OTHER_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = signing.load_private_key(pem)
    assert signing.public_key_b64(key) == signing.public_key_b64(OTHER_KEY)


# --- settings and checks -----------------------------------------------------------------


def test_the_setting_defaults_to_the_demo_public_key_of_the_key_module():
    assert settings.DEMO_LICENSE_PUBLIC_KEY == DEMO_PUBLIC_KEY
    assert signing.public_key_b64(signing.load_private_key(DEMO_PRIVATE_KEY)) == DEMO_PUBLIC_KEY


def test_check_warns_about_the_demo_key_in_production():
    with override_settings(DEBUG=False, LICENSE_PUBLIC_KEY=DEMO_PUBLIC_KEY):
        assert [m.id for m in check_license_public_key()] == ["licensing.W001"]
    with override_settings(DEBUG=True, LICENSE_PUBLIC_KEY=DEMO_PUBLIC_KEY):
        assert check_license_public_key() == []
    with override_settings(DEBUG=False, LICENSE_PUBLIC_KEY=signing.public_key_b64(OTHER_KEY)):
        assert check_license_public_key() == []


def test_check_refuses_a_broken_key():
    with override_settings(LICENSE_PUBLIC_KEY="abc"):
        assert [m.id for m in check_license_public_key()] == ["licensing.E001"]


# --- capacity ----------------------------------------------------------------------------


def test_capacity_sums_valid_licenses_only_in_one_query(org, other_org, django_assert_num_queries):
    today = timezone.localdate()
    make_license(org, 10)
    make_license(org, 5)
    make_license(org, 100, today - timedelta(days=400), today - timedelta(days=1))  # expired
    make_license(org, 1000, today + timedelta(days=1), today + timedelta(days=30))  # future
    make_license(org, 7, today, today)  # valid for today only
    make_license(other_org, 50)
    with django_assert_num_queries(1):
        assert capacity.capacity(org) == 22
    assert capacity.capacity(org, today + timedelta(days=1)) == 1015
    assert capacity.capacity(other_org) == 50
    assert capacity.capacity(make_organization()) == 0


def test_model_status_and_queryset_agree_on_validity(org):
    today = timezone.localdate()
    rows = [
        make_license(org, 1, today - timedelta(days=9), today - timedelta(days=1)),
        make_license(org, 1, today, today),
        make_license(org, 1, today + timedelta(days=1), today + timedelta(days=2)),
    ]
    assert [row.status for row in rows] == ["expired", "valid", "not yet valid"]
    assert list(License.objects.valid_on(today)) == [rows[1]]


def test_reserve_grants_what_fits(org, counter):
    make_license(org, 10)
    make_devices(org, ["provisioned", "provisioning", "enrolling", "discovered", "failed"])
    with transaction.atomic():
        reservation = capacity.reserve(org, 7, count_licensed)
    assert (reservation.used, reservation.total) == (3, 10)
    assert (reservation.free_before, reservation.free_after) == (7, 0)


def test_reserve_refuses_beyond_capacity_saying_how_many_are_free(org, counter):
    make_license(org, 10)
    make_devices(org, ["provisioned"] * 7)
    with transaction.atomic(), pytest.raises(CapacityExceeded) as error:
        capacity.reserve(org, 5, count_licensed)
    assert str(error.value) == (
        "Only 3 of the requested 5 devices can be provisioned: 7 of 10 seats are in use."
    )
    assert (error.value.free, error.value.requested) == (3, 5)


def test_reserve_without_any_license(org, counter):
    with transaction.atomic(), pytest.raises(CapacityExceeded) as error:
        capacity.reserve(org, 1)
    assert str(error.value) == (
        "Only 0 of the requested 1 device can be provisioned: 0 of 0 seats are in use."
    )


@pytest.mark.django_db(transaction=True)
def test_reserve_outside_a_transaction_is_a_programming_error(org):
    """Outside the caller's transaction the lock would end before the devices move."""
    with pytest.raises(transaction.TransactionManagementError):
        capacity.reserve(org, 1, count_licensed)


def test_reserve_needs_a_counter_and_a_whole_number(org):
    make_license(org, 10)
    previous = capacity.get_used_counter()
    capacity.set_used_counter(None)
    try:
        with transaction.atomic(), pytest.raises(ImproperlyConfigured, match="set_used_counter"):
            capacity.reserve(org, 1)
    finally:
        capacity.set_used_counter(previous)
    with transaction.atomic(), pytest.raises(ValueError):
        capacity.reserve(org, -1, count_licensed)


def test_reserve_uses_the_registered_counter(org, counter):
    make_license(org, 2)
    make_devices(org, ["provisioned", "provisioned"])
    with transaction.atomic(), pytest.raises(CapacityExceeded):
        capacity.reserve(org, 1)


def test_reserve_locks_the_organization_row(org, counter, django_assert_num_queries):
    make_license(org, 1)
    with (
        transaction.atomic(),
        django_assert_num_queries(3) as captured,  # lock, used, capacity
    ):
        capacity.reserve(org, 1)
    lock = captured.captured_queries[0]["sql"]
    assert "portal_organization" in lock
    # SQLite has no FOR UPDATE (its IMMEDIATE transactions serialize writers instead).
    from django.db import connection

    if connection.features.has_select_for_update:
        # NO KEY: serialises reservations without holding up rows that point at it.
        assert "FOR NO KEY UPDATE" in lock


def test_releasing_is_implicit_a_device_leaving_a_licensed_state_frees_its_seat(org, counter):
    make_license(org, 1)
    (device,) = make_devices(org, ["provisioned"])
    with transaction.atomic(), pytest.raises(CapacityExceeded):
        capacity.reserve(org, 1)
    assert lifecycle.apply(device, lifecycle.Action.DEPROVISION)
    with transaction.atomic():
        assert capacity.reserve(org, 1).free_before == 1


def test_an_expired_license_can_leave_an_organization_over_capacity(org, counter):
    today = timezone.localdate()
    make_license(org, 2, today - timedelta(days=30), today - timedelta(days=1))
    make_license(org, 1)
    make_devices(org, ["provisioned"] * 2)
    usage = capacity.usage(org)
    assert (usage.used, usage.total, usage.free, usage.over_capacity) == (2, 1, 0, True)
    assert len(usage.licenses) == 2


def test_usage_without_a_registered_counter_shows_no_count(org):
    previous = capacity.get_used_counter()
    capacity.set_used_counter(None)
    try:
        usage = capacity.usage(org)
    finally:
        capacity.set_used_counter(previous)
    assert usage.used is None and usage.free is None and not usage.over_capacity


# --- the widget: seeing ------------------------------------------------------------------


def test_the_widget_is_registered_for_everybody():
    widget = next(w for w in widgets.visible_widgets(frozenset()) if w.key == "licenses")
    assert (widget.title, widget.order, widget.rule, widget.url_name) == (
        "Licenses",
        32,
        "view",
        "licensing:widget",
    )


def test_the_dashboard_shows_the_licenses_widget(login, org, admin_user):
    response = login(admin_user).get(reverse("dashboard"))
    assert response.status_code == 200
    assert reverse("licensing:widget") in response.content.decode()


@pytest.mark.parametrize("roles", [(), (DM,), (IOT,), (DM, IOT)])
def test_members_see_usage_and_licenses_but_no_upload_form(login, org, counter, roles):
    make_license(org, 10)
    make_devices(org, ["provisioned"] * 3)
    response = login(make_member(org, roles)).get(reverse("licensing:widget"))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<progress id="license-usage-bar"' in body and 'max="10" value="3"' in body
    assert "<strong>3</strong> of <strong>10</strong> seats in use, <strong>7</strong> free" in body
    assert reverse("licensing:upload") not in body


def test_administrators_get_the_upload_form(login, org, admin_user, counter):
    body = login(admin_user).get(reverse("licensing:widget")).content.decode()
    assert f'action="{reverse("licensing:upload")}"' in body
    assert 'enctype="multipart/form-data"' in body and 'name="text"' in body
    assert "No valid license" in body


def test_htmx_gets_the_partial_and_a_browser_the_full_page(login, org, admin_user, counter):
    client = login(admin_user)
    partial = client.get(reverse("licensing:widget"), headers={"HX-Request": "true"})
    full = client.get(reverse("licensing:widget"))
    assert "<html" not in partial.content.decode()
    assert 'id="licenses-widget"' in partial.content.decode()
    # The dashboard's card header shows used / total, refreshed out of band.
    assert (
        'id="widget-licenses-count" hx-swap-oob="true" title="Seats in use of seats licensed">0 / 0<'
        in partial.content.decode()
    )
    assert "<html" in full.content.decode() and 'id="licenses-widget"' in full.content.decode()


def test_expired_and_future_licenses_are_greyed(login, org, admin_user, counter):
    today = timezone.localdate()
    expired = make_license(org, 3, today - timedelta(days=30), today - timedelta(days=1))
    future = make_license(org, 4, today + timedelta(days=1), today + timedelta(days=9))
    valid = make_license(org, 5)
    body = login(admin_user).get(reverse("licensing:widget")).content.decode()
    assert f'id="license-{expired.pk}" class="license-expired muted"' in body
    assert f'id="license-{future.pk}" class="license-not-yet-valid muted"' in body
    assert f'id="license-{valid.pk}" class="license-valid"' in body
    assert "Expired" in body and "Not yet valid" in body


def test_the_widget_shows_only_the_own_organizations_licenses(login, org, other_org, counter):
    mine, theirs = make_license(org, 10), make_license(other_org, 99)
    make_devices(other_org, ["provisioned"] * 4)
    body = login(make_member(org)).get(reverse("licensing:widget")).content.decode()
    assert f'id="license-{mine.pk}"' in body
    assert f'id="license-{theirs.pk}"' not in body and str(theirs.license_id)[:8] not in body
    assert 'max="10" value="0"' in body


def test_a_member_of_two_sees_the_chosen_organization(login, org, other_org, counter):
    user = make_member(org)
    make_membership(user, other_org)
    theirs = make_license(other_org, 99)
    client = login(user)
    client.post(reverse("switch-organization"), {"organization": other_org.pk})
    body = client.get(reverse("licensing:widget")).content.decode()
    assert f'id="license-{theirs.pk}"' in body and 'max="99"' in body


def test_the_widget_costs_the_same_queries_for_one_or_many_licenses(
    login, org, admin_user, counter
):
    client = login(admin_user)
    make_license(org, 1)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        client.get(reverse("licensing:widget"))
    for _ in range(5):
        make_license(org, 1, uploaded_by=admin_user)
    with CaptureQueriesContext(connection) as six:
        client.get(reverse("licensing:widget"))
    assert len(one) == len(six)


def test_the_widget_works_before_the_devices_app_registers_its_counter(login, org, admin_user):
    make_license(org, 4)
    previous = capacity.get_used_counter()
    capacity.set_used_counter(None)
    try:
        response = login(admin_user).get(
            reverse("licensing:widget"), headers={"HX-Request": "true"}
        )
    finally:
        capacity.set_used_counter(previous)
    body = response.content.decode()
    assert response.status_code == 200
    assert "4 seats licensed; the number in use is not available yet." in body
    assert 'title="Seats in use of seats licensed">— / 4<' in body


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("licensing:widget"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


# --- the widget: uploading ---------------------------------------------------------------


def upload(client, data: bytes, htmx=False, name="acme.json"):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(
        reverse("licensing:upload"),
        {"file": SimpleUploadedFile(name, data, content_type="application/json")},
        headers=headers,
    )


def test_an_administrator_uploads_a_license_file(login, org, admin_user, counter):
    data = license_file(valid_from=timezone.localdate(), valid_until=timezone.localdate())
    response = upload(login(admin_user), data)
    assert response.status_code == 302 and response["Location"] == reverse("licensing:widget")
    stored = License.objects.get()
    claims = signing.verify(data, DEMO_PUBLIC_KEY)
    assert (stored.organization, stored.license_id, stored.capacity) == (org, claims.license_id, 10)
    assert stored.raw == data.decode() and stored.uploaded_by == admin_user
    entry = AuditEntry.objects.get()
    assert (entry.organization, entry.user, entry.action, entry.outcome) == (
        org,
        admin_user,
        "license.upload",
        AuditOutcome.SUCCESS,
    )
    assert entry.object_ids == [stored.pk] and entry.detail["license_id"] == str(stored.license_id)
    assert capacity.capacity(org) == 10


def test_an_upload_through_htmx_returns_the_refreshed_widget(login, org, admin_user, counter):
    response = upload(login(admin_user), license_file(valid_from=date(2020, 1, 1)), htmx=True)
    body = response.content.decode()
    assert response.status_code == 200 and "License installed: 10 devices" in body
    assert 'max="10" value="0"' in body and "<html" not in body


def test_a_license_can_be_pasted(login, org, admin_user, counter):
    data = license_file(valid_from=date(2020, 1, 1))
    response = login(admin_user).post(
        reverse("licensing:upload"), {"text": "\n  " + data.decode() + "\n"}
    )
    assert response.status_code == 302
    assert License.objects.get().capacity == 10


def test_the_upload_form_wants_exactly_one_of_file_or_text(login, org, admin_user, counter):
    client = login(admin_user)
    data = license_file(valid_from=date(2020, 1, 1))
    neither = client.post(reverse("licensing:upload"), {})
    both = client.post(
        reverse("licensing:upload"),
        {"text": data.decode(), "file": SimpleUploadedFile("l.json", data)},
    )
    assert "Choose a license file or paste its contents." in neither.content.decode()
    assert "Upload a file or paste the license, not both." in both.content.decode()
    assert not License.objects.exists()
    assert AuditEntry.objects.filter(outcome=AuditOutcome.FAILURE).count() == 2


UPLOAD_REFUSALS = {
    "forged": (
        lambda: license_file(key=OTHER_KEY, valid_from=date(2020, 1, 1)),
        "not issued by the vendor",
    ),
    "tampered": (
        lambda: json.dumps(
            {**json.loads(license_file(valid_from=date(2020, 1, 1))), "capacity": 999}
        ).encode(),
        "changed after it was issued",
    ),
    "expired": (
        lambda: license_file(valid_from=date(2020, 1, 1), valid_until=date(2020, 12, 31)),
        "This license expired: its last valid day was 2020-12-31.",
    ),
    "not yet valid": (
        lambda: license_file(valid_from=date(2999, 1, 1), valid_until=date(2999, 12, 31)),
        "This license is not valid yet: it starts on 2999-01-01.",
    ),
    "other organization": (
        lambda: license_file("globex", organization_name="Globex Inc", valid_from=date(2020, 1, 1)),
        "This license is for another organization (Globex Inc, “globex”), not for this one.",
    ),
    "malformed": (lambda: b"PK\x03\x04 this is a zip", "This is not a valid license file"),
    "oversize": (lambda: b"{" + b" " * (20 * 1024) + b"}", "too large to be a license file"),
    "bad capacity": (
        lambda: signed_document(capacity=0, valid_from="2020-01-01"),
        "must be a positive whole number of devices, not 0",
    ),
}


@pytest.mark.parametrize("case", UPLOAD_REFUSALS)
def test_a_refused_upload_shows_the_reason_and_stores_nothing(
    login, org, admin_user, counter, case
):
    make, reason = UPLOAD_REFUSALS[case]
    response = upload(login(admin_user), make())
    assert response.status_code == 200
    errors = response.context["form"].errors["file"]
    assert any(reason in error for error in errors), errors
    assert reason in response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    assert not License.objects.exists()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome, entry.object_count) == ("license.upload", "failure", 0)
    assert reason in entry.detail["reason"]


def test_a_pasted_refusal_is_an_error_on_the_text_field(login, org, admin_user, counter):
    response = login(admin_user).post(reverse("licensing:upload"), {"text": "not a license"})
    assert "This is not a valid license file" in response.context["form"].errors["text"][0]


def test_a_license_is_used_once_anywhere(login, org, other_org, admin_user, counter):
    data = license_file(valid_from=date(2020, 1, 1))
    client = login(admin_user)
    assert upload(client, data).status_code == 302
    again = upload(client, data)
    license_id = signing.verify(data, DEMO_PUBLIC_KEY).license_id
    assert f"This license ({license_id}) has already been uploaded" in again.content.decode()
    # The same id in a file for another organization (the vendor's mistake, or a replay
    # after an organization was renamed) is refused too: ids are portal-wide.
    reissued = license_file("globex", license_id=str(license_id), valid_from=date(2020, 1, 1))
    globex_admin = make_member(other_org, [ADMIN])
    refused = upload(login(globex_admin), reissued)
    assert "has already been uploaded" in refused.content.decode()
    assert License.objects.count() == 1


def test_a_lost_race_on_the_same_license_id_is_already_used(login, org, admin_user, counter):
    """Two uploads of one file pass verification together; the unique key settles it."""
    from licensing.forms import LicenseUploadForm

    data = license_file(valid_from=date(2020, 1, 1))
    form = LicenseUploadForm({}, {"file": SimpleUploadedFile("l.json", data)}, organization=org)
    assert form.is_valid()
    claims = signing.verify(data, DEMO_PUBLIC_KEY)
    License.objects.create(  # the other upload wins between verification and saving
        organization=org,
        license_id=claims.license_id,
        capacity=1,
        valid_from=claims.valid_from,
        valid_until=claims.valid_until,
        issued_at=claims.issued_at,
        raw="(the other upload)",
    )
    assert form.save(admin_user) is None
    assert "has already been uploaded" in form.errors["file"][0]
    assert form.refusal.code == LicenseError.ALREADY_USED


@pytest.mark.parametrize("roles", [(), (DM,), (IOT,), (DM, IOT)])
def test_non_administrators_cannot_upload(login, org, counter, roles):
    client = login(make_member(org, roles))
    response = upload(client, license_file(valid_from=date(2020, 1, 1)))
    assert response.status_code == 403
    assert not License.objects.exists() and not AuditEntry.objects.exists()


def test_an_administrator_of_another_organization_cannot_upload_here(
    login, org, other_org, counter
):
    """Roles are per organization: admin of Globex, plain member of Acme, acting in Acme."""
    user = make_member(org, ())
    make_membership(user, other_org, [ADMIN])
    response = upload(login(user), license_file(valid_from=date(2020, 1, 1)))
    assert response.status_code == 403
    assert not License.objects.exists()


def test_uploads_land_in_the_current_organization_only(login, org, other_org, counter):
    user = make_member(org, [ADMIN])
    make_membership(user, other_org, [ADMIN])
    client = login(user)
    client.post(reverse("switch-organization"), {"organization": other_org.pk})
    refused = upload(client, license_file("acme", valid_from=date(2020, 1, 1)))
    assert "for another organization" in refused.content.decode()
    assert upload(client, license_file("globex", valid_from=date(2020, 1, 1))).status_code == 302
    assert License.objects.get().organization == other_org


def test_upload_only_takes_post(login, org, admin_user):
    assert login(admin_user).get(reverse("licensing:upload")).status_code == 405


# --- admin -------------------------------------------------------------------------------


def test_admin_shows_licenses_scoped_and_read_only(client, org, other_org):
    mine, theirs = make_license(org, 10), make_license(other_org, 20)
    staff = make_staff(org)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="licensing"))
    client.force_login(staff)
    changelist = client.get(reverse("admin:licensing_license_changelist"))
    assert changelist.status_code == 200
    assert {row.pk for row in changelist.context["cl"].result_list} == {mine.pk}
    page = client.get(reverse("admin:licensing_license_change", args=[mine.pk]))
    assert page.status_code == 200
    assert "&quot;signature&quot;" in page.content.decode()  # the raw file, shown
    assert 'name="raw"' not in page.content.decode()  # but not editable
    assert (
        client.get(reverse("admin:licensing_license_change", args=[theirs.pk])).status_code == 302
    )
    assert client.get(reverse("admin:licensing_license_add")).status_code == 403


def test_admin_post_cannot_change_a_license(client, org):
    mine = make_license(org, 10)
    client.force_login(make_staff(superuser=True))
    url = reverse("admin:licensing_license_change", args=[mine.pk])
    response = client.post(url, {"capacity": 9999})
    assert response.status_code == 403
    mine.refresh_from_db()
    assert mine.capacity == 10


# --- management commands -----------------------------------------------------------------


def run(name, *args):
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_generate_license_keypair_prints_a_working_pair():
    out, err = run("generate_license_keypair")
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    private, public = lines["LICENSE_PRIVATE_KEY"], lines["LICENSE_PUBLIC_KEY"]
    assert public != DEMO_PUBLIC_KEY and "secret" in err
    data = license_file(key=private)
    assert signing.verify(data, public, organization="acme", today=TODAY).capacity == 10


def test_issue_license_with_the_demo_key_says_so(monkeypatch):
    monkeypatch.delenv("LICENSE_PRIVATE_KEY", raising=False)
    out, err = run("issue_license", "--organization", "acme", "--capacity", "25", "--days", "30")
    claims = signing.verify(out.encode(), DEMO_PUBLIC_KEY, organization="acme")
    assert claims.capacity == 25 and claims.organization_name == "acme"
    assert claims.valid_from == timezone.localdate()
    assert claims.valid_until == timezone.localdate() + timedelta(days=29)
    assert "DEMO private key" in err


def test_issue_license_with_a_key_file_to_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("LICENSE_PRIVATE_KEY", raising=False)
    key_file, out_file = tmp_path / "vendor.key", tmp_path / "acme.json"
    key_file.write_text(signing.private_key_b64(OTHER_KEY) + "\n")
    out, err = run(
        "issue_license",
        "--organization",
        "acme",
        "--organization-name",
        "Acme Corp",
        "--capacity",
        "500",
        "--days",
        "365",
        "--valid-from",
        "2026-01-01",
        "--private-key",
        str(key_file),
        "--out",
        str(out_file),
    )
    assert out == "" and "DEMO" not in err and str(out_file) in err
    claims = signing.verify(
        out_file.read_bytes(), signing.public_key_b64(OTHER_KEY), organization="acme", today=TODAY
    )
    assert (claims.capacity, claims.organization_name) == (500, "Acme Corp")
    assert (claims.valid_from, claims.valid_until) == (date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(LicenseError):  # not signed by the demo key
        verify(out_file.read_bytes())


def test_issue_license_takes_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("LICENSE_PRIVATE_KEY", signing.private_key_b64(OTHER_KEY))
    out, err = run("issue_license", "--organization", "acme", "--capacity", "1", "--days", "1")
    assert "DEMO" not in err and "LICENSE_PRIVATE_KEY" in err
    assert signing.verify(out.encode(), signing.public_key_b64(OTHER_KEY)).capacity == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--capacity", "0", "--days", "30"], "positive whole number"),
        (["--capacity", "5", "--days", "0"], "--days must be at least 1"),
        (["--capacity", "5", "--days", "3", "--valid-from", "soon"], "not a date"),
        (["--capacity", "5", "--days", "3", "--private-key", "/nonexistent/key"], "Cannot read"),
    ],
)
def test_issue_license_refuses_nonsense(monkeypatch, args, message):
    monkeypatch.delenv("LICENSE_PRIVATE_KEY", raising=False)
    with pytest.raises(CommandError, match=message):
        run("issue_license", "--organization", "acme", *args)


def test_an_issued_license_installs_end_to_end(login, org, admin_user, counter, monkeypatch):
    monkeypatch.delenv("LICENSE_PRIVATE_KEY", raising=False)
    out, _ = run("issue_license", "--organization", "acme", "--capacity", "3", "--days", "10")
    assert upload(login(admin_user), out.encode()).status_code == 302
    make_devices(org, ["discovered"] * 4)
    with transaction.atomic(), pytest.raises(CapacityExceeded, match="Only 3 of the requested 4"):
        capacity.reserve(org, 4)
