"""The organization-isolation matrix of the REST API: every endpoint x every role
combination x own and other organization x token and session authentication.

A user gets the right status code, never another organization's data, and never
changes it. New API URLs join ``ENDPOINTS``; a meta-test fails when one is missing.
"""

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from devices.choices import DeviceState as S
from devices.choices import OperationState
from devices.models import BulkOperation, Device, DeviceGroup, Operation
from enrollment.choices import EnrollmentStatus
from enrollment.models import EnrollmentRecord
from firmware.formats import fgfw_image
from firmware.models import FirmwareImage
from licensing import signing
from licensing.keys import DEMO_PRIVATE_KEY
from licensing.models import License
from portal import permissions
from portal.models import AuditEntry
from tests.factories import make_device, make_license, make_member, make_token, make_user
from tests.test_enrollment_qr import gps_jpeg, label_photo
from tests.test_isolation import COMBINATIONS, World, _combo_id, _url_names

pytestmark = pytest.mark.django_db


class ApiWorld(World):
    """The widgets' world, plus what the API shows more: licenses, failed operations."""

    def __init__(self):
        super().__init__()
        now = timezone.now()
        for side, o in self.orgs.items():
            org, mark = o["org"], side.upper()
            o["license"] = make_license(org, seats=10)
            failed = make_device(
                org,
                o["device"].device_type,
                serial_number=f"SERIAL-{mark}-MARK-FAILED",
                gateway=o["gateway"],
                state=S.FAILED,
            )
            Operation.objects.create(
                organization=org,
                bulk=o["bulk"],
                device=failed,
                gateway=o["gateway"],
                kind="provision",
                state=OperationState.FAILED,
                from_state=S.DISCOVERED,
                next_attempt_at=now,
                expires_at=now,
                code="rejected",
                error=f"ERROR-{mark}-MARK",
                finished_at=now,
            )
            BulkOperation.objects.filter(pk=o["bulk"].pk).update(failed=1, finished_at=now)
            o["failed_device"] = failed
            # the widgets' world has a pending record: a failed one can be retried too
            EnrollmentRecord.objects.filter(pk=o["record"].pk).update(
                status=EnrollmentStatus.FAILED, reason=f"REASON-{mark}-MARK"
            )
            o["license_file"] = signing.issue(
                DEMO_PRIVATE_KEY,
                {
                    "organization": org.slug,
                    "capacity": 5,
                    "valid_from": timezone.localdate() - timedelta(days=1),
                    "valid_until": timezone.localdate() + timedelta(days=30),
                },
            ).decode()

    def markers(self, side):
        o = self.orgs[side]
        mark = side.upper()
        return [
            *super().markers(side),
            f"ERROR-{mark}-MARK",
            str(o["license"].license_id),
            f"REASON-{mark}-MARK",
        ]

    def fingerprint(self, side):
        """Everything of one organization a request could change."""
        org = self.orgs[side]["org"]
        return (
            sorted(Device.objects.for_organization(org).values_list("pk", "state")),
            sorted(
                DeviceGroup.objects.for_organization(org).values_list(
                    "pk", "name", "description", "devices"
                ),
                key=repr,
            ),
            sorted(
                BulkOperation.objects.for_organization(org).values_list(
                    "pk", "total", "done", "failed", "cancelled"
                )
            ),
            sorted(Operation.objects.for_organization(org).values_list("pk", "state")),
            License.objects.for_organization(org).count(),
            AuditEntry.objects.for_organization(org).count(),
            sorted(
                EnrollmentRecord.objects.for_organization(org).values_list(
                    "pk", "status", "photo", "serial_number"
                )
            ),
            sorted(FirmwareImage.objects.for_organization(org).values_list("pk", "sha256")),
        )


@pytest.fixture
def world():
    return ApiWorld()


@dataclass(frozen=True)
class Endpoint:
    """One API request. ``rule`` None: any logged-in user (schema and docs).

    ``args``/``body`` build the URL arguments and the body from one side's objects; the
    "other" request uses the other organization's objects and expects ``other`` (None:
    a list or create endpoint, whose other side is the markers check). ``shows`` is an
    own-organization marker an allowed user must see (proof the scope is not empty).
    """

    name: str
    method: str
    rule: str | None
    args: Any = None
    body: Any = None
    own: int = 200
    other: int | None = None
    shows: str | None = None
    label: str = ""
    fmt: str = "json"  # "multipart" for file uploads

    @property
    def id(self):
        return f"{self.method.upper()} {self.name}{self.label}"


def image_file(o):
    """A new image for the organization's image type (its own bytes each time)."""
    handle = io.BytesIO(fgfw_image("9.9.9", f"new image for {o['org'].slug}".encode()))
    handle.name = "new-9.9.9.fgfw"
    return {"file": handle}


def device_ids(o):
    return {"action": "provision", "devices": [o["device"].pk]}


ENDPOINTS = [
    Endpoint("api:device-list", "get", "view", shows="SERIAL-OWN-MARK"),
    Endpoint(
        "api:device-detail",
        "get",
        "view",
        args=lambda o: [o["device"].pk],
        other=404,
        shows="GROUP-OWN-MARK",
    ),
    Endpoint("api:device-actions", "post", "device_actions", body=device_ids, own=202, other=409),
    Endpoint(
        "api:device-actions",
        "post",
        "device_actions",
        body=lambda o: {"action": "provision", "group": o["group"].pk},
        own=202,
        other=400,
        label=" (group)",
    ),
    Endpoint(
        "api:device-actions",
        "post",
        "device_actions",
        body=lambda o: device_ids(o) | {"preview": True},
        own=200,
        other=200,  # a plan with the device skipped: no such device here
        label=" (preview)",
    ),
    Endpoint("api:group-list", "get", "view", shows="GROUP-OWN-MARK"),
    Endpoint(
        "api:group-list",
        "post",
        "manage_groups",
        body=lambda o: {"name": "A new group"},
        own=201,
    ),
    Endpoint("api:group-detail", "get", "view", args=lambda o: [o["group"].pk], other=404),
    Endpoint(
        "api:group-detail",
        "patch",
        "manage_groups",
        args=lambda o: [o["group"].pk],
        body=lambda o: {"description": "changed"},
        other=404,
    ),
    Endpoint(
        "api:group-detail",
        "put",
        "manage_groups",
        args=lambda o: [o["group"].pk],
        body=lambda o: {"name": "Renamed", "description": ""},
        other=404,
    ),
    Endpoint(
        "api:group-detail",
        "delete",
        "manage_groups",
        args=lambda o: [o["group"].pk],
        own=204,
        other=404,
    ),
    Endpoint(
        "api:group-add-devices",
        "post",
        "manage_groups",
        args=lambda o: [o["group"].pk],
        body=lambda o: {"devices": [o["failed_device"].pk]},
        other=404,
    ),
    Endpoint(
        "api:group-remove-devices",
        "post",
        "manage_groups",
        args=lambda o: [o["group"].pk],
        body=lambda o: {"devices": [o["device"].pk]},
        other=404,
    ),
    Endpoint("api:gateway-list", "get", "view", shows="GW-OWN-MARK"),
    Endpoint(
        "api:gateway-detail",
        "get",
        "view",
        args=lambda o: [o["gateway"].pk],
        other=404,
        shows="GW-OWN-MARK",
    ),
    Endpoint("api:operation-list", "get", "view", shows="BULK-OWN-MARK"),
    Endpoint(
        "api:operation-detail",
        "get",
        "view",
        args=lambda o: [o["bulk"].pk],
        other=404,
        shows="ERROR-OWN-MARK",
    ),
    Endpoint(
        "api:operation-failures",
        "get",
        "view",
        args=lambda o: [o["bulk"].pk],
        other=404,
        shows="SERIAL-OWN-MARK-FAILED",
    ),
    Endpoint(
        "api:operation-cancel",
        "post",
        "device_actions",
        args=lambda o: [o["bulk"].pk],
        other=404,
    ),
    Endpoint(
        "api:operation-retry-failed",
        "post",
        "device_actions",
        args=lambda o: [o["bulk"].pk],
        own=202,
        other=404,
    ),
    Endpoint("api:license-list", "get", "view"),
    Endpoint(
        "api:license-list",
        "post",
        "manage_licenses",
        body=lambda o: {"text": o["license_file"]},
        own=201,
        other=400,  # another organization's file is refused
    ),
    Endpoint("api:license-usage", "get", "view"),
    Endpoint("api:enrollment-list", "get", "view", shows="ENROLL-OWN-MARK"),
    Endpoint(
        "api:enrollment-list",
        "post",
        "enroll",
        body=lambda o: {
            "serial_number": "NEW-SERIAL-1",
            "access_key": "abcd-1234",
            "device_type": o["device"].device_type.name,
            "gateway": o["gateway"].uid,
        },
        own=201,
        other=400,  # another organization's gateway is no gateway here
    ),
    Endpoint(
        "api:enrollment-detail",
        "get",
        "view",
        args=lambda o: [o["record"].pk],
        other=404,
        shows="REASON-OWN-MARK",
    ),
    Endpoint(
        "api:enrollment-app",
        "post",
        "enroll",
        body=lambda o: {
            "serial_number": "NEW-SERIAL-2",
            "access_key": "abcd-1234",
            "device_type": o["device"].device_type.name,
        },
        own=201,
    ),
    Endpoint(
        "api:enrollment-photo",
        "post",
        "enroll",
        args=lambda o: [o["record"].pk],
        body=lambda o: {"photo": io.BytesIO(gps_jpeg((64, 48)))},
        fmt="multipart",
        other=404,
    ),
    Endpoint(
        "api:enrollment-photo",
        "get",
        "view",
        args=lambda o: [o["record"].pk],
        own=404,  # no photo yet (the photo tests serve one)
        other=404,
    ),
    Endpoint(
        "api:enrollment-retry",
        "post",
        "enroll",
        args=lambda o: [o["record"].pk],
        other=404,
    ),
    Endpoint(
        "api:enrollment-decode-qr",
        "post",
        "enroll",
        body=lambda o: {"image": io.BytesIO(label_photo("SN-QR-MATRIX", scale=3))},
        fmt="multipart",
        shows="SN-QR-MATRIX",
    ),
    Endpoint("api:nearby-list", "get", "enroll", shows="SERIAL-OWN-MARK"),
    Endpoint("api:firmware-image-list", "get", "view", shows="IMAGE-OWN-MARK"),
    Endpoint(
        "api:firmware-image-list",
        "post",
        "device_actions",
        body=image_file,
        fmt="multipart",
        own=201,
    ),
    Endpoint(
        "api:firmware-image-detail",
        "get",
        "view",
        args=lambda o: [o["image"].pk],
        other=404,
        shows="IMAGE-OWN-MARK",
    ),
    Endpoint(
        "api:firmware-image-detail",
        "delete",
        "device_actions",
        args=lambda o: [o["image"].pk],
        own=204,
        other=404,
    ),
    Endpoint("api:schema", "get", None, shows="/api/v1/devices/"),
    Endpoint("api:docs", "get", None),
    Endpoint("api:redoc", "get", None),
]
ENDPOINT_IDS = [e.id for e in ENDPOINTS]
DATA_ENDPOINTS = [e for e in ENDPOINTS if e.rule is not None]  # not the schema and docs


def client_for(user, auth):
    client = APIClient()
    if auth == "token":
        client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    else:
        client.force_login(user)
    return client


def call(client, endpoint, objects, headers=None):
    url = reverse(endpoint.name, args=endpoint.args(objects) if endpoint.args else None)
    body = endpoint.body(objects) if endpoint.body else None
    return getattr(client, endpoint.method)(url, body, format=endpoint.fmt, headers=headers)


def requests_of(endpoint):
    """The sides to request: own always; other when it has an other-organization form."""
    has_other = endpoint.other is not None
    return ["own", "other"] if has_other else ["own"]


@pytest.mark.parametrize("auth", ["token", "session"])
@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_matrix(world, roles, endpoint, auth):
    client = client_for(make_member(world.orgs["own"]["org"], roles), auth)
    allowed = endpoint.rule is None or permissions.allows(endpoint.rule, roles)
    untouched, own_before = world.fingerprint("other"), world.fingerprint("own")
    for side in requests_of(endpoint):
        response = call(client, endpoint, world.orgs[side])
        body = response.content.decode()
        expected = (endpoint.own if side == "own" else endpoint.other) if allowed else 403
        assert response.status_code == expected, (side, body[:500])
        for marker in world.markers("other"):
            assert marker not in body, f"{endpoint.id} ({side}) leaked {marker}"
        if allowed and side == "own" and endpoint.shows:
            assert endpoint.shows in body, f"{endpoint.id} does not show its own rows"
        assert world.fingerprint("other") == untouched, f"{endpoint.id} changed the other org"
    if not allowed:
        assert world.fingerprint("own") == own_before, f"{endpoint.id} was refused but wrote"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_anonymous_requests_are_401(world, endpoint):
    response = call(APIClient(), endpoint, world.orgs["own"])
    assert response.status_code == 401
    for side in ("own", "other"):
        for marker in world.markers(side):
            assert marker not in response.content.decode()


@pytest.mark.parametrize("auth", ["token", "session"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=ENDPOINT_IDS)
def test_user_of_no_organization_sees_nothing(world, endpoint, auth):
    client = client_for(make_user(), auth)
    response = call(client, endpoint, world.orgs["own"])
    assert response.status_code == (200 if endpoint.rule is None else 403)
    for side in ("own", "other"):
        for marker in world.markers(side):
            assert marker not in response.content.decode()


@pytest.mark.parametrize("endpoint", DATA_ENDPOINTS, ids=[e.id for e in DATA_ENDPOINTS])
def test_naming_another_organization_in_the_header_is_403(world, endpoint):
    """X-Organization chooses among the user's own memberships only."""
    client = client_for(make_member(world.orgs["own"]["org"], ["administrator"]), "token")
    other = world.orgs["other"]["org"]
    for value in (other.slug, str(other.pk)):
        response = call(client, endpoint, world.orgs["other"], {"X-Organization": value})
        assert response.status_code == 403
        for marker in world.markers("other"):
            assert marker not in response.content.decode()


# No organization's data: covered by their own tests.
NOT_IN_MATRIX = {
    "api:token-login",  # anonymous by design, throttled: tests/test_security_auth.py
}


def test_every_api_url_is_in_the_matrix():
    """A new URL under /api/v1/ must join ENDPOINTS (or NOT_IN_MATRIX, with a reason)."""
    ours = {n for n in _url_names(get_resolver()) if n.startswith("api:")}
    assert ours, "the API's URL names moved out of the api: namespace"
    assert ours - {e.name for e in ENDPOINTS} - NOT_IN_MATRIX == set()
