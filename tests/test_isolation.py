"""The organization-isolation matrix: every role combination x every view x own and
other organization. A user gets the right status code and never another organization's data.

New views join ``VIEWS`` (CONTRIBUTING.md); a meta-test fails when a URL name of the
portal's apps is missing from the matrix.
"""

import itertools

import pytest
from django.urls import get_resolver, reverse
from django.utils import timezone

from devices.models import BulkOperation, DeviceEvent
from enrollment.models import EnrollmentRecord
from portal import audit, permissions
from portal.choices import Role
from tests.factories import (
    make_device,
    make_device_type,
    make_firmware_image,
    make_gateway,
    make_group,
    make_member,
    make_membership,
    make_organization,
    make_user,
)

pytestmark = pytest.mark.django_db

ROLES = [r.value for r in Role]
COMBINATIONS = [
    frozenset(c) for n in range(len(ROLES) + 1) for c in itertools.combinations(ROLES, n)
]


def _combo_id(roles):
    return "+".join(sorted(roles)) or "no-role"


class World:
    """Two organizations with one of everything; every marker string is unique to its org."""

    def __init__(self):
        device_type = make_device_type()
        image_type = make_device_type(image_extensions=[".fgfw"])
        self.orgs = {}
        for side in ("own", "other"):
            org = make_organization(name=f"Org {side.upper()} Inc")
            gateway = make_gateway(org, name=f"GW-{side.upper()}-MARK")
            device = make_device(
                org,
                device_type,
                serial_number=f"SERIAL-{side.upper()}-MARK",
                name=f"Device {side} mark",
                gateway=gateway,
            )
            group = make_group(org, name=f"GROUP-{side.upper()}-MARK")
            group.devices.add(device)
            DeviceEvent.objects.create(
                organization=org,
                gateway=gateway,
                device=device,
                kind="alarm",
                message=f"EVENT-{side.upper()}-MARK",
                occurred_at=timezone.now(),
            )
            bulk = BulkOperation.objects.create(
                organization=org, kind="provision", target=f"BULK-{side.upper()}-MARK", total=1
            )
            record = EnrollmentRecord.objects.create(
                organization=org,
                serial_number=f"ENROLL-{side.upper()}-MARK",
                access_key=f"KEY-{side.upper()}-MARK",
                device_type=device_type,
                gateway=gateway,
            )
            image = make_firmware_image(
                org,
                "1.0",
                device_type=image_type,
                filename=f"IMAGE-{side.upper()}-MARK-1.0.fgfw",
                payload=f"payload {side}".encode(),
            )
            member = make_member(org, [Role.DEVICE_MANAGER], username=f"member-{side}")
            audit.record(org, member, "group.create", [group], name=f"AUDIT-{side.upper()}-MARK")
            self.orgs[side] = {
                "image": image,
                "bulk": bulk,
                "org": org,
                "device": device,
                "group": group,
                "gateway": gateway,
                "membership": member.memberships.get(),
                "record": record,
            }

    def markers(self, side):
        return [
            f"SERIAL-{side.upper()}-MARK",
            f"GROUP-{side.upper()}-MARK",
            f"GW-{side.upper()}-MARK",
            f"EVENT-{side.upper()}-MARK",
            f"BULK-{side.upper()}-MARK",
            f"ENROLL-{side.upper()}-MARK",
            f"KEY-{side.upper()}-MARK",  # an access key is never shown, not even to its org
            f"AUDIT-{side.upper()}-MARK",
            f"IMAGE-{side.upper()}-MARK",
        ]


@pytest.fixture
def world():
    return World()


# (url name, rule, how to build the URL from one side's objects, or None for list views)
VIEWS = [
    ("dashboard", "view", None),
    ("devices:widget", "view", None),
    ("devices:groups-widget", "view", None),
    ("devices:gateways-widget", "view", None),
    ("devices:events-widget", "view", None),
    ("devices:event-rate", "view", None),
    ("licensing:widget", "view", None),
    ("members", "manage_members", None),
    ("audit:log", "view_audit", None),
    ("audit:export", "view_audit", None),
    ("member-add", "manage_members", None),
    ("devices:group-create", "manage_groups", None),
    ("devices:group-add-devices", "manage_groups", None),
    ("devices:group-remove-devices", "manage_groups", None),
    ("devices:gateway-create", "manage_gateways", None),
    ("devices:action", "device_actions", None),
    ("devices:operations-widget", "view", None),
    ("devices:detail", "view", lambda o: [o["device"].pk]),
    ("devices:operation-detail", "view", lambda o: [o["bulk"].pk]),
    ("devices:operation-cancel", "device_actions", lambda o: [o["bulk"].pk]),
    ("devices:operation-retry", "device_actions", lambda o: [o["bulk"].pk]),
    ("devices:group-rename", "manage_groups", lambda o: [o["group"].pk]),
    ("devices:group-delete", "manage_groups", lambda o: [o["group"].pk]),
    ("devices:gateway-rotate", "manage_gateways", lambda o: [o["gateway"].pk]),
    ("devices:gateway-delete", "manage_gateways", lambda o: [o["gateway"].pk]),
    ("enrollment:widget", "view", None),
    ("enrollment:create", "enroll", None),
    ("enrollment:batch-new", "enroll", None),
    ("enrollment:installer-scan", "enroll", None),
    ("enrollment:installer-nearby", "enroll", None),
    ("enrollment:installer-enroll", "enroll", None),
    ("enrollment:labels", "enroll", None),
    ("enrollment:installer-result", "enroll", lambda o: [o["record"].pk]),
    ("enrollment:installer-status", "enroll", lambda o: [o["record"].pk]),
    ("devices:delete", "enroll", lambda o: [o["device"].pk]),
    ("devices:edit", "device_actions", lambda o: [o["device"].pk]),
    ("member-edit", "manage_members", lambda o: [o["membership"].pk]),
    ("member-remove", "manage_members", lambda o: [o["membership"].pk]),
    ("firmware:widget", "view", None),
    ("firmware:image-delete", "device_actions", lambda o: [o["image"].pk]),
]
# POST-only or not organization data: covered by their own tests.
NOT_IN_MATRIX = {
    "login",
    "logout",
    "switch-organization",
    "dashboard-layout",
    "licensing:upload",
    "enrollment:retry",  # POST only: tests/test_enrollment.py
    "enrollment:retry-failed",
    "enrollment:batch-commit",  # POST only, and a token of the user's session:
    "enrollment:batch-errors",  # tests/test_enrollment_batch.py
    "enrollment:installer-retry",  # POST only: tests/test_enrollment_installer.py
    "firmware:upload",  # POST only: tests/test_firmware_upload.py
    "firmware:download",  # a gateway's bearer token, no session: tests/test_firmware_download.py
    "invitations",  # the user's own invitations, not an organization's: tests/test_members.py
    "invitation-revoke",  # POST only: tests/test_members.py
    "api-tokens",  # the user's own tokens: tests/test_security_auth.py
}


@pytest.mark.parametrize("roles", COMBINATIONS, ids=_combo_id)
@pytest.mark.parametrize(("name", "rule", "args"), VIEWS, ids=[v[0] for v in VIEWS])
def test_matrix(client, world, roles, name, rule, args):
    user = make_member(world.orgs["own"]["org"], roles)
    client.force_login(user)
    allowed = permissions.allows(rule, roles)
    for side in ("own", "other"):
        if args is None and side == "other":
            continue  # list views have no other-organization URL; the markers check below
        url = reverse(name, args=args(world.orgs[side]) if args else None)
        response = client.get(url)
        if not allowed:
            assert response.status_code in (403, 404) if side == "other" else (403,), url
        elif side == "own":
            assert response.status_code == 200, url
        else:
            assert response.status_code == 404, url
        body = response.getvalue().decode()  # streamed or not
        for marker in world.markers("other"):
            assert marker not in body, f"{url} leaked {marker}"


@pytest.mark.parametrize(("name", "rule", "args"), VIEWS, ids=[v[0] for v in VIEWS])
def test_anonymous_users_are_sent_to_log_in(client, world, name, rule, args):
    url = reverse(name, args=args(world.orgs["own"]) if args else None)
    response = client.get(url)
    assert response.status_code == 302 and reverse("login") in response["Location"]


@pytest.mark.parametrize(("name", "rule", "args"), VIEWS, ids=[v[0] for v in VIEWS])
def test_user_of_no_organization_sees_nothing(client, world, name, rule, args):
    client.force_login(make_user())
    url = reverse(name, args=args(world.orgs["own"]) if args else None)
    response = client.get(url)
    assert response.status_code in (403, 404)
    for side in ("own", "other"):
        for marker in world.markers(side):
            assert marker not in response.getvalue().decode()


def test_switching_organization_changes_what_is_shown(client, world):
    user = make_member(world.orgs["own"]["org"], [Role.ADMINISTRATOR])
    make_membership(user, world.orgs["other"]["org"], [Role.ADMINISTRATOR])
    client.force_login(user)
    client.post(reverse("switch-organization"), {"organization": world.orgs["other"]["org"].pk})
    body = client.get(reverse("devices:widget")).content.decode()
    assert "SERIAL-OTHER-MARK" in body and "SERIAL-OWN-MARK" not in body
    own_device = world.orgs["own"]["device"]
    assert client.get(reverse("devices:detail", args=[own_device.pk])).status_code == 404


def test_posting_to_another_organizations_group_is_a_404(client, world):
    user = make_member(world.orgs["own"]["org"], [Role.ADMINISTRATOR])
    client.force_login(user)
    other = world.orgs["other"]
    for name in ("devices:group-rename", "devices:group-delete"):
        response = client.post(reverse(name, args=[other["group"].pk]), {"name": "stolen"})
        assert response.status_code == 404
    other["group"].refresh_from_db()
    assert other["group"].name == "GROUP-OTHER-MARK"


def _url_names(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            namespace = f"{prefix}{pattern.namespace}:" if pattern.namespace else prefix
            yield from _url_names(pattern, namespace)
        elif pattern.name:
            yield prefix + pattern.name


def test_every_portal_view_is_in_the_matrix():
    """A new URL of our apps must join VIEWS (or NOT_IN_MATRIX, with a reason)."""
    # The admin and django-rq's pages are staff-only and scoped by their own tests.
    # The REST API ("api:") has its own matrix, tests/test_api_isolation.py.
    ours = {
        n for n in _url_names(get_resolver()) if not n.startswith(("admin:", "django_rq:", "api:"))
    }
    covered = {v[0] for v in VIEWS} | NOT_IN_MATRIX
    assert ours - covered == set()
