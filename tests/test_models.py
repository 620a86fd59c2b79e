"""Inventory and portal models: constraints, clean(), roles, the audit log, __str__."""

import itertools

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from devices.choices import STATE_COLOURS, DeviceState, Protocol
from devices.models import Device, DeviceGroup, DeviceType
from portal import audit
from portal.choices import AuditOutcome, Role
from portal.models import AuditEntry, DashboardLayout, Membership
from tests.factories import (
    make_device,
    make_device_type,
    make_gateway,
    make_group,
    make_member,
    make_membership,
    make_organization,
    make_user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def device_type():
    return make_device_type()


# --- Device: serial number per organization ----------------------------------------


def test_same_serial_in_two_organizations_is_fine(org, other_org, device_type):
    make_device(org, device_type, serial_number="SN-1")
    make_device(other_org, device_type, serial_number="SN-1")
    assert Device.objects.filter(serial_number="SN-1").count() == 2


def test_same_serial_twice_in_one_organization_is_refused(org, device_type):
    make_device(org, device_type, serial_number="SN-1")
    duplicate = Device(organization=org, device_type=device_type, serial_number="SN-1")
    with pytest.raises(ValidationError) as excinfo:
        duplicate.full_clean()
    assert "already exists" in str(excinfo.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


# --- Device: hardware id (MAC address or UID) --------------------------------------


def test_hardware_id_is_unique_across_organizations(org, other_org, device_type):
    make_device(org, device_type, hardware_id="AA:BB:CC:00:11:22")
    duplicate = Device(
        organization=other_org,
        device_type=device_type,
        serial_number="SN-2",
        hardware_id="AA:BB:CC:00:11:22",
    )
    with pytest.raises(ValidationError) as excinfo:
        duplicate.full_clean()
    assert "hardware_id" in excinfo.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_hardware_id_is_normalised_so_case_does_not_dodge_uniqueness(org, device_type):
    device = make_device(org, device_type, hardware_id="  aa:bb:cc:00:11:22 ")
    assert device.hardware_id == "AA:BB:CC:00:11:22"
    with pytest.raises(ValidationError) as excinfo:
        make_device(org, device_type, hardware_id="aa:BB:cc:00:11:22")
    assert "hardware_id" in excinfo.value.message_dict


def test_devices_without_hardware_id_are_many(org, device_type):
    for _ in range(3):
        make_device(org, device_type)  # NULL
    for _ in range(2):
        make_device(org, device_type, hardware_id="   ")  # blank becomes NULL in clean()
    assert Device.objects.filter(hardware_id__isnull=True).count() == 5
    # And at the database level too, not only through clean().
    Device.objects.create(organization=org, device_type=device_type, serial_number="RAW-1")
    Device.objects.create(organization=org, device_type=device_type, serial_number="RAW-2")
    assert Device.objects.filter(hardware_id__isnull=True).count() == 7


# --- DeviceGroup: case-insensitive name per organization ---------------------------


def test_group_name_is_unique_per_organization_ignoring_case(org):
    make_group(org, "Roof sensors")
    duplicate = DeviceGroup(organization=org, name="ROOF SENSORS")
    with pytest.raises(ValidationError) as excinfo:
        duplicate.full_clean()
    assert excinfo.value.message_dict["name"] == ["A group with this name already exists."]
    with pytest.raises(IntegrityError), transaction.atomic():
        DeviceGroup.objects.create(organization=org, name="roof sensors")


def test_same_group_name_in_another_organization_is_fine(org, other_org):
    make_group(org, "Roof sensors")
    make_group(other_org, "roof sensors")


def test_renaming_a_group_to_another_case_of_itself_is_fine(org):
    group = make_group(org, "Roof sensors")
    group.name = "ROOF sensors"
    group.full_clean()
    group.save()


# --- DeviceType: image extensions --------------------------------------------------


def test_device_type_extensions_are_normalised():
    lon = make_device_type(
        "LON controller", Protocol.LON, image_extensions=["APB", " .ndl ", "nx", ".NXI"]
    )
    assert lon.image_extensions == [".apb", ".ndl", ".nx", ".nxi"]
    lon.refresh_from_db()
    assert lon.image_extensions == [".apb", ".ndl", ".nx", ".nxi"]


@pytest.mark.parametrize(
    ("filename", "accepted"),
    [
        ("controller.apb", True),
        ("CONTROLLER.APB", True),
        ("controller.ndl", True),
        ("controller.nx", True),
        ("controller.nxi", True),
        ("controller.v2.nxi", True),
        ("controller.bin", False),
        ("controller.apb.zip", False),
        ("controllernx", False),
        ("controller.nxz", False),
        ("", False),
    ],
)
def test_lon_device_type_accepts_its_images(filename, accepted):
    lon = make_device_type(protocol=Protocol.LON, image_extensions=[".apb", ".ndl", ".nx", ".nxi"])
    assert lon.accepts_image(filename) is accepted


def test_device_type_without_extensions_accepts_no_image():
    assert make_device_type().accepts_image("anything.bin") is False


@pytest.mark.parametrize("bad", [[""], ["  "], [3], [".apb", None]])
def test_device_type_refuses_non_text_extensions(bad):
    with pytest.raises(ValidationError) as excinfo:
        make_device_type(image_extensions=bad)
    assert "image_extensions" in excinfo.value.message_dict


def test_device_type_refuses_a_bare_string_of_extensions():
    with pytest.raises(ValidationError):
        make_device_type(image_extensions=".apb")


# --- Device: organization of the gateway -------------------------------------------


def test_device_refuses_a_gateway_of_another_organization(org, other_org, device_type):
    foreign = make_gateway(other_org)
    with pytest.raises(ValidationError) as excinfo:
        make_device(org, device_type, gateway=foreign)
    assert excinfo.value.message_dict["gateway"] == [
        "This gateway belongs to another organization."
    ]
    assert not Device.objects.exists()


def test_device_takes_a_gateway_of_its_own_organization(org, device_type):
    gateway = make_gateway(org)
    assert make_device(org, device_type, gateway=gateway).gateway == gateway
    assert make_device(org, device_type, gateway=None).gateway is None


def test_moving_a_device_to_another_organization_checks_its_gateway(org, other_org, device_type):
    device = make_device(org, device_type, gateway=make_gateway(org))
    device.organization = other_org
    with pytest.raises(ValidationError):
        device.full_clean()


# --- Device: state presentation ----------------------------------------------------


def test_new_device_is_discovered_and_blue(org, device_type):
    device = make_device(org, device_type)
    assert device.state == DeviceState.DISCOVERED
    assert device.state_colour == "blue"
    assert device.allowed_actions == {"provision", "reprovision", "enroll"}


def test_every_state_has_a_colour_and_provisioned_is_green():
    assert set(STATE_COLOURS) == set(DeviceState)
    assert STATE_COLOURS[DeviceState.PROVISIONED] == "green"


def test_state_is_not_editable_in_forms():
    assert Device._meta.get_field("state").editable is False


# --- Membership roles --------------------------------------------------------------

ROLE_SUBSETS = [
    frozenset(combo)
    for n in range(4)
    for combo in itertools.combinations([r.value for r in Role], n)
]


@pytest.mark.parametrize("roles", ROLE_SUBSETS, ids=lambda r: "+".join(sorted(r)) or "none")
def test_membership_roles_round_trip(org, roles):
    membership = make_membership(make_user(), org, roles)
    assert Membership.objects.get(pk=membership.pk).roles == roles


def test_set_roles_replaces_and_accepts_role_members(org):
    membership = make_membership(make_user(), org, [Role.ADMINISTRATOR, "iot_manager"])
    assert membership.roles == {"administrator", "iot_manager"}
    membership.set_roles([Role.DEVICE_MANAGER])
    membership.save()
    membership.refresh_from_db()
    assert membership.roles == {"device_manager"}
    assert (membership.is_administrator, membership.is_iot_manager) == (False, False)


def test_set_roles_ignores_unknown_roles(org):
    membership = make_membership(make_user(), org, ["superuser", "Administrator"])
    assert membership.roles == frozenset()


def test_role_labels_follow_the_role_order(org):
    membership = make_membership(make_user(), org, ["iot_manager", "administrator"])
    assert membership.role_labels == ["Administrator", "IoT Manager"]


def test_one_membership_per_user_and_organization(org):
    user = make_user()
    make_membership(user, org)
    with pytest.raises(ValidationError):
        make_membership(user, org)
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=user, organization=org)


# --- The audit log -----------------------------------------------------------------


def test_audit_record_keeps_who_what_and_outcome(org, device_type):
    user = make_member(org, ["administrator"])
    devices = [make_device(org, device_type) for _ in range(3)]
    entry = audit.record(org, user, "provision", devices, outcome=AuditOutcome.PARTIAL, refused=1)
    entry.refresh_from_db()
    assert (entry.organization, entry.user, entry.action) == (org, user, "provision")
    assert entry.object_type == "device"
    assert entry.object_ids == [d.pk for d in devices]
    assert entry.object_count == 3
    assert entry.outcome == "partial"
    assert entry.detail == {"refused": 1}


def test_audit_record_caps_ids_but_keeps_the_count(org):
    ids = list(range(1, audit.MAX_IDS + 251))
    entry = audit.record(org, None, "provision", ids, object_type="device")
    entry.refresh_from_db()
    assert entry.object_ids == ids[: audit.MAX_IDS]
    assert entry.object_count == audit.MAX_IDS + 250


def test_audit_record_of_nothing_and_of_anonymous(org):
    entry = audit.record(org, AnonymousUser(), "login_failed", outcome=AuditOutcome.DENIED)
    assert entry.user is None
    assert (entry.object_ids, entry.object_count, entry.object_type) == ([], 0, "")
    assert entry.outcome == "denied"


def test_audit_record_takes_a_queryset(org, device_type):
    devices = [make_device(org, device_type) for _ in range(2)]
    entry = audit.record(org, None, "delete", Device.objects.filter(organization=org))
    assert sorted(entry.object_ids) == sorted(d.pk for d in devices)
    assert entry.object_type == "device"


@pytest.mark.parametrize("wrap", [set, lambda objs: (o for o in objs)], ids=["set", "generator"])
def test_audit_record_takes_any_iterable(org, device_type, wrap):
    devices = [make_device(org, device_type) for _ in range(2)]
    entry = audit.record(org, None, "delete", wrap(devices))
    assert entry.object_count == 2 and entry.object_type == "device"


def test_audit_entries_newest_first(org):
    first = audit.record(org, None, "a")
    second = audit.record(org, None, "b")
    assert list(AuditEntry.objects.all()) == [second, first]


# --- __str__ -----------------------------------------------------------------------


def test_str_of_inventory(org, device_type):
    assert str(org) == org.name
    assert str(device_type) == device_type.name
    assert str(make_gateway(org, uid="gw-roof", name="Roof gateway")) == "Roof gateway"
    assert str(make_group(org, "Lobby")) == "Lobby"
    assert str(make_device(org, device_type, serial_number="SN-9")) == "SN-9"
    assert str(make_device(org, device_type, serial_number="SN-10", name="Lamp 3")) == "Lamp 3"
    assert str(DeviceType(name="Mesh node", protocol=Protocol.BLE)) == "Mesh node"


def test_str_of_gateway_falls_back_to_uid(org):
    gateway = make_gateway(org, uid="gw-7")
    gateway.name = ""
    assert str(gateway) == "gw-7"


def test_str_of_portal_models(org):
    user = make_user("alice")
    membership = make_membership(user, org)
    assert str(membership) == f"alice @ {org.name}"
    entry = audit.record(org, user, "enroll", outcome=AuditOutcome.FAILURE)
    assert str(entry) == f"{entry.created_at:%Y-%m-%d %H:%M} alice enroll (failure)"
    layout = DashboardLayout.objects.create(user=user)
    assert str(layout) == "Dashboard layout of alice"


def test_str_of_unsaved_audit_entry(org):
    assert "enroll" in str(AuditEntry(organization=org, action="enroll"))


@pytest.mark.django_db
def test_hardware_id_is_normalised_on_every_save_not_only_in_clean():
    org, device_type = make_organization(), make_device_type()
    device = Device.objects.create(
        organization=org, device_type=device_type, serial_number="N1", hardware_id=" aa:bb:cc "
    )
    blank = Device.objects.create(
        organization=org, device_type=device_type, serial_number="N2", hardware_id=""
    )
    again = Device.objects.create(
        organization=org, device_type=device_type, serial_number="N3", hardware_id="  "
    )
    device.refresh_from_db()
    assert device.hardware_id == "AA:BB:CC"
    assert blank.hardware_id is None and again.hardware_id is None
