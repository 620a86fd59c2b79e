"""Demo and benchmark inventory: device types, gateways, groups and devices in bulk.

``seed_demo`` and ``bench_widgets`` both call :func:`seed_organization`. It is
idempotent — rows are found by their natural keys (type name, gateway UID, group
name, serial number) and only the missing ones are created — and fast: devices go
in with ``bulk_create`` in batches and group memberships straight into the M2M
through table, so 100,000 devices take seconds.

Every generated value is a pure function of the device's index (no random state),
so a second run computes the same serials and skips them. Seed rows are written as
a snapshot of a running building: this is the one place that sets ``Device.state``
without ``devices.lifecycle`` — nothing transitions here, rows are born in a state.
"""

import itertools
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from devices.choices import DeviceState, Protocol
from devices.models import Device, DeviceGroup, DeviceType, Gateway
from portal.models import Membership, Organization

GATEWAY_TYPE = "Fleetgate Gateway"
DEVICE_TYPES = (
    {"name": "BLE Mesh Node", "protocol": Protocol.BLE, "image_extensions": [".bin", ".hex"]},
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

# Field devices: (type name, share in percent, serial prefix, what the units are).
FIELD_MIX = (
    ("BLE Mesh Node", 60, "BLE", ("Luminaire", "Presence sensor", "Wall switch")),
    ("LON Device", 25, "LON", ("Fan coil unit", "VAV controller", "Blind actuator")),
    ("IOX Controller", 15, "IOX", ("IO module", "Meter interface")),
)
# Mostly provisioned; no in-flight states, since no operation would ever finish them.
STATE_MIX = (
    (DeviceState.PROVISIONED, 74),
    (DeviceState.DISCOVERED, 12),
    (DeviceState.DEPROVISIONED, 6),
    (DeviceState.FAILED, 5),
    (DeviceState.UNENROLLED, 3),
)
AREAS = ("Floor 1", "Floor 2", "Floor 3", "Floor 4", "Lobby", "Parking")
DEMO_GROUPS = ("Floor 1", "Floor 2", "Lobby", "Parking")

Progress = Callable[[int, int], None]


@dataclass
class SeedResult:
    created: dict[str, int] = field(default_factory=dict)
    devices: int = 0  # devices of the organization afterwards

    def add(self, what: str, n: int = 1):
        self.created[what] = self.created.get(what, 0) + n


def _spread(index: int, salt: str, modulo: int) -> int:
    """A stable, well-spread number in ``range(modulo)`` for device ``index``."""
    return zlib.crc32(f"{salt}:{index}".encode()) % modulo


def _pick(index: int, salt: str, table):
    """A stable choice from a table whose rows carry their weight (in percent) second."""
    bucket = _spread(index, salt, 100)
    for row in table:
        bucket -= row[1]
        if bucket < 0:
            return row
    return table[0]


def field_serial(index: int) -> str:
    return f"{_pick(index, 'type', FIELD_MIX)[2]}-{index + 1:07d}"


def _mac(first_octet: int, organization_id: int, index: int) -> str:
    """A locally administered MAC, unique across organizations (hardware_id is global)."""
    octets = (first_octet, organization_id >> 8, organization_id, index >> 16, index >> 8, index)
    return ":".join(f"{octet & 0xFF:02X}" for octet in octets)


def _location(area: str, number: int) -> str:
    if area.startswith("Floor "):
        floor = area.removeprefix("Floor ")
        return f"{area}, room {floor}.{number % 24 + 1:02d}"
    if area == "Parking":
        return f"Parking, bay {number % 80 + 1}"
    return f"{area}, {('reception', 'entrance', 'lifts')[number % 3]}"


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


def ensure_gateways(organization, count: int, gateway_type, result: SeedResult) -> list[Gateway]:
    """``count`` gateways, and one gateway-type device record for each."""
    now = timezone.now()
    gateways = []
    for n in range(1, count + 1):
        online = n % 5 in (1, 2, 3)  # 3 of every 5 online, one seen days ago, one never
        last_seen = (
            now - timedelta(minutes=n)
            if online
            else (now - timedelta(days=n) if n % 5 == 4 else None)
        )
        gateway, created = Gateway.objects.get_or_create(
            uid=f"{organization.slug}-gw-{n:02d}",
            defaults={
                "organization": organization,
                "name": f"Gateway {n:02d} ({AREAS[(n - 1) % len(AREAS)]})",
                "is_online": online,
                "last_seen": last_seen,
                "secret": secrets.token_urlsafe(32),  # signs its messages; encrypted at rest
                "secret_rotated_at": now,
            },
        )
        if gateway.organization_id != organization.pk:
            raise ValueError(f"Gateway UID {gateway.uid} already belongs to another organization.")
        result.add("gateways", created)
        _, created = Device.objects.get_or_create(
            organization=organization,
            serial_number=f"GW-{n:04d}",
            defaults={
                "device_type": gateway_type,
                "hardware_id": _mac(0x0A, organization.pk, n),
                "name": gateway.name,
                "state": DeviceState.PROVISIONED,
                "location": f"{AREAS[(n - 1) % len(AREAS)]}, riser cupboard",
            },
        )
        result.add("devices", created)
        gateways.append(gateway)
    return gateways


def ensure_groups(organization, names, result: SeedResult) -> dict[str, DeviceGroup]:
    groups = {}
    for name in names:
        groups[name], created = DeviceGroup.objects.get_or_create(
            organization=organization,
            name=name,
            defaults={"description": f"Every device on {name.lower()}."},
        )
        result.add("groups", created)
    return groups


def field_device(organization, index: int, types, gateways) -> tuple[Device, str]:
    """Field device number ``index`` of an organization, and the area it sits in."""
    type_name, _, _, kinds = _pick(index, "type", FIELD_MIX)
    state = _pick(index, "state", STATE_MIX)[0]
    area = AREAS[index % len(AREAS)]
    number = index // len(AREAS) + 1
    kind = kinds[_spread(index, "kind", len(kinds))]
    gateway = gateways[_spread(index, "gateway", len(gateways))] if gateways else None
    device = Device(
        organization_id=organization.pk,
        device_type_id=types[type_name].pk,
        serial_number=field_serial(index),
        hardware_id=_mac(0x02, organization.pk, index),
        name=f"{area} – {kind} {number}",
        gateway_id=gateway.pk if gateway else None,
        state=state,
        location=_location(area, number),
    )
    return device, area


def create_field_devices(
    organization, count, types, gateways, groups, result, *, progress=None, batch_size=2000
):
    """Create the missing ones of field devices ``0 … count-1``; group them by area."""
    existing = set(
        Device.objects.filter(organization=organization).values_list("serial_number", flat=True)
    )
    missing = [i for i in range(count) if field_serial(i) not in existing]
    pairs = (field_device(organization, i, types, gateways) for i in missing)
    through = Device.groups.through
    done = 0
    for batch in itertools.batched(pairs, batch_size):
        created = Device.objects.bulk_create([device for device, _ in batch], batch_size=batch_size)
        members = [
            through(device_id=device.pk, devicegroup_id=groups[area].pk)
            for device, (_, area) in zip(created, batch, strict=True)
            if area in groups
        ]
        through.objects.bulk_create(members, batch_size=batch_size)
        done += len(created)
        result.add("devices", len(created))
        result.add("group memberships", len(members))
        if progress:
            progress(done, len(missing))


def seed_organization(
    organization,
    *,
    devices: int,
    gateways: int = 5,
    groups=DEMO_GROUPS,
    progress=None,
    result: SeedResult | None = None,
) -> SeedResult:
    """Give ``organization`` ``devices`` devices in all (``gateways`` of them gateways)."""
    result = result or SeedResult()
    with transaction.atomic():
        types = ensure_device_types()
        gateway_rows = ensure_gateways(organization, gateways, types[GATEWAY_TYPE], result)
        group_rows = ensure_groups(organization, groups, result)
        create_field_devices(
            organization,
            max(devices - gateways, 0),
            types,
            gateway_rows,
            group_rows,
            result,
            progress=progress,
        )
    result.devices = Device.objects.filter(organization=organization).count()
    return result


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
