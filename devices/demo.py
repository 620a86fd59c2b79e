"""Demo and benchmark inventory: device types, gateways, groups and devices in bulk.

What the demo's gateways have is described once, in ``gateway.fleet``: this module
writes that fleet into the portal, and ``python -m gateway simulate --fleet`` runs the
same fleet's gateways, so every device the portal lists is on the gateway it names,
with the same serial, hardware id, type and state (``tests/test_demo_fleet.py``
compares them device by device). ``seed_demo`` seeds ``gateway.fleet.DEMO`` and
``OTHER``; ``bench_widgets`` a fleet of its own size through :func:`seed_organization`.

Idempotent — rows are found by their natural keys (type name, gateway UID, group name,
serial number) and only the missing ones are created — and fast: devices go in with
``bulk_create`` in batches and group memberships straight into the M2M through table,
so 100,000 devices take seconds. Seed rows are written as a snapshot of a running
building: this is the one place that sets ``Device.state`` without
``devices.lifecycle`` — nothing transitions here, rows are born in a state.

Gateways are born offline and never heard from: only their link (their status and
messages through the bridge) may say they are online.
"""

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from devices.choices import DeviceState, Protocol
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from gateway import fleet as fleets
from gateway.fleet import GATEWAY_TYPE, Fleet
from portal.models import Membership, Organization

DEVICE_TYPES = (
    # .fgfw: Fleetgate's own image format, which the simulated nodes take (firmware/demo.py)
    {
        "name": "BLE Mesh Node",
        "protocol": Protocol.BLE,
        "image_extensions": [".bin", ".hex", ".fgfw"],
    },
    {
        "name": "LON Device",
        "protocol": Protocol.LON,
        "image_extensions": [".apb", ".ndl", ".nx", ".nxi"],
        "replace_needs_manual_reset": True,
    },
    {"name": "IOX Controller", "protocol": Protocol.IOX, "image_extensions": [".iox"]},
    {
        "name": GATEWAY_TYPE,
        "protocol": Protocol.IP,
        "image_extensions": [".fw"],
        "is_gateway": True,
    },
)

Progress = Callable[[int, int], None]


@dataclass
class SeedResult:
    created: dict[str, int] = field(default_factory=dict)
    devices: int = 0  # devices of the organization afterwards

    def add(self, what: str, n: int = 1):
        self.created[what] = self.created.get(what, 0) + n


def ensure_device_types() -> dict[str, DeviceType]:
    types = {}
    for spec in DEVICE_TYPES:
        defaults = {k: v for k, v in spec.items() if k != "name"}
        types[spec["name"]], _ = DeviceType.objects.get_or_create(
            name=spec["name"], defaults=defaults
        )
    return types


def ensure_organization(slug: str, name: str, result: SeedResult) -> Organization:
    organization, created = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
    result.add("organizations", created)
    return organization


def ensure_gateways(organization, fleet: Fleet, types, result: SeedResult) -> dict[int, Gateway]:
    """The fleet's gateways (offline until they connect), and each one's own device
    record, which sits on that gateway: its agent answers for it."""
    now = timezone.now()
    gateways = {}
    for n in range(1, fleet.gateways + 1):
        gateway, created = Gateway.objects.get_or_create(
            uid=fleet.uid(n),
            defaults={
                "organization": organization,
                "name": fleet.gateway_name(n),
                "secret": secrets.token_urlsafe(32),  # signs its messages; encrypted at rest
                "secret_rotated_at": now,
            },
        )
        if gateway.organization_id != organization.pk:
            raise ValueError(f"Gateway UID {gateway.uid} already belongs to another organization.")
        result.add("gateways", created)
        spec = fleet.gateway_device(n)
        _, created = Device.objects.get_or_create(
            organization=organization,
            serial_number=spec.serial,
            defaults=_device_fields(spec, types, gateway),
        )
        result.add("devices", created)
        gateways[n] = gateway
    return gateways


def _where(area: str) -> str:
    return (
        f"Every device on {area}."
        if area.startswith("Floor ")
        else f"Every device in the {area.lower()}."
    )


def ensure_groups(organization, names, result: SeedResult) -> dict[str, DeviceGroup]:
    groups = {}
    for name in names:
        groups[name], created = DeviceGroup.objects.get_or_create(
            organization=organization,
            name=name,
            defaults={"description": _where(name)},
        )
        result.add("groups", created)
    return groups


def _device_fields(spec: fleets.FleetDevice, types, gateway) -> dict:
    return {
        "device_type_id": types[spec.device_type].pk,
        "hardware_id": spec.hardware_id,
        "name": spec.name,
        "gateway_id": gateway.pk,
        "state": DeviceState(spec.state),
        "location": spec.location,
    }


def create_field_devices(
    organization, fleet: Fleet, types, gateways, groups, result, *, progress=None, batch_size=2000
):
    """Create the missing ones of the fleet's placed devices; group them by floor."""
    existing = set(
        Device.objects.filter(organization=organization).values_list("serial_number", flat=True)
    )
    missing = [
        (gateway, spec)
        for n, gateway in gateways.items()
        for spec in (fleet.field_device(n, i) for i in range(1, fleet.placed(n) + 1))
        if spec.serial not in existing
    ]
    through = Device.groups.through
    done = 0
    for batch in itertools.batched(missing, batch_size):
        devices = [
            Device(
                organization_id=organization.pk,
                serial_number=spec.serial,
                **_device_fields(spec, types, gateway),
            )
            for gateway, spec in batch
        ]
        created = Device.objects.bulk_create(devices, batch_size=batch_size)
        members = [
            through(device_id=device.pk, devicegroup_id=groups[spec.area].pk)
            for device, (_, spec) in zip(created, batch, strict=True)
            if spec.grouped and spec.area in groups
        ]
        through.objects.bulk_create(members, batch_size=batch_size)
        done += len(created)
        result.add("devices", len(created))
        result.add("group memberships", len(members))
        if progress:
            progress(done, len(missing))


def seed_fleet(organization, fleet: Fleet, *, progress=None, result=None) -> SeedResult:
    """Write ``fleet`` (``gateway.fleet``) into ``organization``: gateways, a group per
    floor, and the placed devices in their states. The new devices stay out: the
    portal learns of them from their gateway, or when they are enrolled."""
    result = result or SeedResult()
    with transaction.atomic():
        types = ensure_device_types()
        gateway_rows = ensure_gateways(organization, fleet, types, result)
        areas = dict.fromkeys(fleet.area(g) for g in gateway_rows)
        group_rows = ensure_groups(organization, areas, result)
        create_field_devices(
            organization, fleet, types, gateway_rows, group_rows, result, progress=progress
        )
    result.devices = Device.objects.filter(organization=organization).count()
    return result


def seed_organization(
    organization, *, devices: int, gateways: int = 5, progress=None, result=None
) -> SeedResult:
    """Give ``organization`` ``devices`` devices in all (``gateways`` of them gateways),
    as a fleet of its own (the benchmarks' inventory)."""
    fleet = Fleet(organization.slug, gateways=gateways, devices=devices)
    return seed_fleet(organization, fleet, progress=progress, result=result)


class DemoPassword:
    """One password for many demo users, hashed once: checking a PBKDF2 hash costs ~0.5 s.

    Every user it sets gets the same encoded hash, so one successful check vouches for
    all of them on the next run.
    """

    def __init__(self, raw: str):
        self.raw, self.encoded, self.known_good = raw, None, set()

    def apply(self, user) -> bool:
        """Give ``user`` this password; False when it already had it."""
        if user.password in self.known_good:
            return False
        if user.password and check_password(self.raw, user.password):  # "" is a new user
            self.known_good.add(user.password)
            return False
        self.encoded = self.encoded or make_password(self.raw)
        self.known_good.add(self.encoded)
        user.password = self.encoded
        return True


def ensure_member(organization, username, roles, password: DemoPassword, result, **extra):
    """A user who belongs to ``organization`` with exactly ``roles`` and logs in with ``password``."""
    domain = f"{organization.slug}.example" if organization else "fleetgate.example"
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@{domain}", **extra}
    )
    result.add("users", created)
    if password.apply(user):
        user.save(update_fields=["password"])
        result.add("passwords set", not created)
    if organization is not None:
        membership, created = Membership.objects.get_or_create(user=user, organization=organization)
        if created or membership.roles != frozenset(str(role) for role in roles):
            membership.set_roles(roles)
            membership.save()
            result.add("role changes", not created)
        result.add("memberships", created)
    return user


def ensure_demo_license(organization, capacity: int, result: SeedResult, *, seats=None):
    """A valid license signed with the demo key, so the demo can provision out of the box.

    Only when the portal trusts the demo key: a deployment with its own vendor key would
    (rightly) refuse a demo-signed license. ``seats``: also add a license when fewer than
    that many are free (the benchmarks grow their organization's capacity this way).
    """
    from django.conf import settings

    from licensing import capacity as seats_of
    from licensing import keys, signing
    from licensing.models import License

    if settings.LICENSE_PUBLIC_KEY != keys.DEMO_PUBLIC_KEY:
        return None
    today = timezone.localdate()
    existing = License.objects.for_organization(organization).valid_on(today).first()
    if existing and seats is None:
        return existing
    if existing:
        free = seats_of.usage(organization).free
        if free >= seats:
            return existing
        capacity = seats - free
    data = signing.issue(
        signing.load_private_key(keys.DEMO_PRIVATE_KEY),
        {
            "organization": organization.slug,
            "organization_name": organization.name,
            "capacity": capacity,
            "valid_from": today,
            "valid_until": today + timedelta(days=364),
        },
    )
    claims = signing.verify(data, settings.LICENSE_PUBLIC_KEY, organization=organization.slug)
    result.add("licenses")
    row = License.from_claims(organization, claims, data.decode())
    row.save()
    return row
