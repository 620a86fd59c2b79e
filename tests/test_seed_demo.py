"""The demo seed: what it creates, that a second run changes nothing, and the logins work."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count

from devices import demo, lifecycle
from devices.choices import DeviceState, Protocol
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from gateway import fleet
from portal import permissions
from portal.models import Membership, Organization

pytestmark = pytest.mark.django_db

User = get_user_model()


def seed(*args):
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def snapshot():
    """Everything a second run could change, row by row."""
    return {
        model.__name__: sorted(model.objects.values_list(*fields))
        for model, fields in (
            (Organization, ("pk", "slug", "name")),
            (DeviceType, ("pk", "name", "image_extensions")),
            (Gateway, ("pk", "uid", "organization", "is_online", "last_seen")),
            (Device, ("pk", "serial_number", "hardware_id", "state", "gateway", "updated_at")),
            (DeviceGroup, ("pk", "organization", "name")),
            (Device.groups.through, ("pk", "device", "devicegroup")),
            (User, ("pk", "username", "password", "is_staff", "is_superuser")),
            (
                Membership,
                (
                    "pk",
                    "user",
                    "organization",
                    "is_administrator",
                    "is_device_manager",
                    "is_iot_manager",
                ),
            ),
        )
    }


def test_seed_creates_the_demo_organization_and_a_second_tenant():
    seed()
    org = Organization.objects.get(slug="demo")
    assert org.name == "Demo Building Co"
    assert Device.objects.filter(organization=org).count() == fleet.DEMO.devices == 200
    assert Gateway.objects.filter(organization=org).count() == 5
    # Offline and never heard from until their simulator connects.
    assert not Gateway.objects.filter(is_online=True).exists()
    assert Gateway.objects.filter(organization=org, uid="demo-gw-01").exists()
    assert all(gateway.secret for gateway in Gateway.objects.filter(organization=org))
    groups = DeviceGroup.objects.filter(organization=org).annotate(n=Count("devices"))
    assert {g.name for g in groups} == {"Floor 1", "Floor 2", "Floor 3", "Floor 4", "Lobby"}
    assert all(g.n > 0 for g in groups)

    other = Organization.objects.get(slug="other", name="Other Tenant Ltd")
    assert 0 < Device.objects.filter(organization=other).count() < 20


def test_device_types_match_the_catalogue():
    seed()
    types = {t.name: t for t in DeviceType.objects.all()}
    assert types["BLE Mesh Node"].protocol == Protocol.BLE
    assert types["BLE Mesh Node"].image_extensions == [".bin", ".hex", ".fgfw"]
    lon = types["LON Device"]
    assert (lon.protocol, lon.replace_needs_manual_reset) == (Protocol.LON, True)
    assert lon.image_extensions == [".apb", ".ndl", ".nx", ".nxi"]
    assert types["IOX Controller"].image_extensions == [".iox"]
    gateway = types["Fleetgate Gateway"]
    assert (gateway.protocol, gateway.is_gateway, gateway.image_extensions) == (
        Protocol.IP,
        True,
        [".fw"],
    )


def test_devices_look_like_a_building():
    seed()
    devices = Device.objects.filter(organization__slug="demo")
    states = dict(devices.values_list("state").annotate(n=Count("pk")))
    assert max(states, key=states.get) == DeviceState.PROVISIONED
    assert {DeviceState.DISCOVERED, DeviceState.FAILED} <= set(states)
    assert devices.values("device_type").distinct().count() == 4
    assert devices.values("gateway").distinct().count() == 5
    for device in devices.select_related("gateway"):
        assert device.gateway.organization_id == device.organization_id
        assert len(device.hardware_id.split(":")) == 6
        # named and located on its gateway's floor
        area = device.gateway.name.split("(")[1].rstrip(")")
        assert device.location.startswith(area), (device, device.gateway)
        assert device.name.startswith(area) or device.name == device.gateway.name
    # every device passes the model's own validation (clean() uppercases MACs, checks gateways)
    for device in devices[:10]:
        device.full_clean()


def test_groups_hold_their_floor_and_nothing_provisioning_cannot_take():
    seed()
    for group in DeviceGroup.objects.filter(organization__slug="demo"):
        members = group.devices.select_related("gateway")
        assert {d.location.split(",")[0] for d in members} == {group.name}
        assert not members.exclude(
            state__in=lifecycle.states_allowing(lifecycle.Action.PROVISION)
        ).exclude(state=DeviceState.PROVISIONED)


def test_no_organization_holds_more_seats_than_its_licenses_allow():
    from licensing import capacity

    seed()
    for org in Organization.objects.all():
        usage = capacity.usage(org)
        assert usage.total > 0 and usage.used <= usage.total, org.slug


def test_one_login_per_role_combination():
    output = seed()
    demo_org = Organization.objects.get(slug="demo")
    expected = {
        "admin": {"administrator"},
        "devmgr": {"device_manager"},
        "iotmgr": {"iot_manager"},
        "enroller": {"device_manager", "iot_manager"},
        "viewer": set(),
    }
    for username, roles in expected.items():
        membership = Membership.objects.get(user__username=username, organization=demo_org)
        assert membership.roles == roles
        assert username in output
    can_enroll = {
        m.user.username
        for m in Membership.objects.filter(organization=demo_org)
        if permissions.can_enroll(m.roles)
    }
    assert can_enroll == {"admin", "enroller"}
    support = User.objects.get(username="support")
    assert support.is_staff and support.is_superuser
    assert not support.memberships.exists()
    assert "fleetgate-demo" in output


def test_the_printed_password_logs_in(client):
    seed("--password", "another-demo-secret")
    assert client.login(username="enroller", password="another-demo-secret")
    assert not client.login(username="enroller", password="fleetgate-demo")


def test_second_run_changes_nothing():
    seed()
    before = snapshot()
    output = seed()
    assert snapshot() == before
    assert "Created: nothing" in output


def test_second_run_restores_roles_and_password(client):
    seed()
    Membership.objects.filter(user__username="viewer").update(is_administrator=True)
    seed("--password", "changed-password")
    assert Membership.objects.get(user__username="viewer").roles == frozenset()
    assert client.login(username="admin", password="changed-password")


def test_a_bigger_fleet_later_adds_only_the_missing_devices():
    result = demo.SeedResult()
    org = demo.ensure_organization("grow", "Grow", result)
    demo.seed_fleet(org, fleet.Fleet("grow", gateways=2, devices=30), result=result)
    first = set(Device.objects.values_list("pk", "serial_number"))
    demo.seed_fleet(org, fleet.Fleet("grow", gateways=2, devices=50), result=result)
    after = set(Device.objects.values_list("pk", "serial_number"))
    assert first < after
    assert Device.objects.filter(organization=org).count() == 50


def test_every_organization_gets_hardware_ids_of_its_own():
    """``hardware_id`` is unique across organizations: it derives from the gateway's UID."""
    result = demo.SeedResult()
    for slug in ("one", "two"):
        org = demo.ensure_organization(slug, slug.title(), result)
        demo.seed_organization(org, devices=30, gateways=2, result=result)
    assert result.created["devices"] == 60
    assert Device.objects.values("hardware_id").distinct().count() == 60


def test_gateway_uid_of_another_organization_is_a_clear_error():
    seed()
    Gateway.objects.filter(uid="demo-gw-01").update(
        organization=Organization.objects.get(slug="other")
    )
    with pytest.raises(CommandError, match="demo-gw-01 already belongs to another organization"):
        seed()


def test_bench_widgets_reuses_the_generator_and_prints_one_json_line():
    out, err = io.StringIO(), io.StringIO()
    args = ("--devices", "60", "--gateways", "5", "--requests", "2")
    call_command("bench_widgets", *args, stdout=out, stderr=err)
    line = json.loads(out.getvalue())
    assert (line["devices"], line["database"]) == (60, connection.vendor)
    assert set(line["per_kind"]) == {"first_page", "filtered", "search", "deep_page"}
    assert line["p95_ms"] == max(kind["p95_ms"] for kind in line["per_kind"].values())
    assert line["queries_per_page"]["25"] == line["queries_per_page"]["200"]
    assert "answered 200" in err.getvalue() and "does NOT list" not in err.getvalue()

    call_command("bench_widgets", *args, stdout=io.StringIO(), stderr=(err := io.StringIO()))
    assert "Using the existing 60 devices" in err.getvalue()


@pytest.mark.django_db
def test_demo_organization_gets_one_valid_license_signed_with_the_demo_key():
    from licensing.models import License

    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    licenses = License.objects.filter(organization__slug="demo")
    assert licenses.count() == 1
    assert licenses.get().capacity >= 400
