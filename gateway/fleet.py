"""The demo fleet: which devices each demo gateway has, described once.

The portal's demo seed (``devices/demo.py``, ``manage.py seed_demo``) and the simulated
gateways (``python -m gateway simulate --fleet``) both read this module, so the devices
the portal lists are the devices its gateways have: the same serial numbers, hardware
ids and types, on the same gateway, named and located on that gateway's floor, in a
state that agrees (a device the portal shows provisioned is provisioned on its link, so
provisioning, deprovisioning, deleting and loading an image all find it).

Everything is a pure function of the organization's slug, the gateway's number and the
device's number — no random state, no file to hand over — so each side computes the
same fleet on its own, as often as it likes, and a test can compare them device by
device. Plain Python: the gateway agent imports no Django.

Each gateway has, numbered from 1 on its link: the *placed* devices, which the portal
knows (seeded in a state from ``STATE_MIX``), and then ``new_per_gateway`` *new* ones,
still in their boxes — factory state, unknown to the portal until their gateway
reports them — which the demo's enrollment list (``manage.py simulated_keys``) names
with the access keys on their labels. The gateway itself is device 0.
"""

import hashlib
import re
import zlib
from dataclasses import dataclass

# Bump when a change would make a database seeded before it disagree with the gateways
# (``make demo`` then starts the demo database afresh).
VERSION = 2
GATEWAY_TYPE = "Fleetgate Gateway"
# Field devices: (device type, share in percent, serial prefix, what the units are).
FIELD_MIX = (
    ("BLE Mesh Node", 60, "BLE", ("Luminaire", "Presence sensor", "Wall switch")),
    ("LON Device", 25, "LON", ("Fan coil unit", "VAV controller", "Blind actuator")),
    ("IOX Controller", 15, "IOX", ("IO module", "Meter interface")),
)
DEVICE_TYPES = (GATEWAY_TYPE, *(row[0] for row in FIELD_MIX))

# What the portal shows for a placed device: mostly provisioned, no state in flight
# (no operation would ever finish it), and none unenrolled: a gateway reports every
# device on its link, and the portal takes an unenrolled one it sees as discovered.
PROVISIONED, DISCOVERED, DEPROVISIONED, FAILED = (
    "provisioned",
    "discovered",
    "deprovisioned",
    "failed",
)
NEW = "new"
STATE_MIX = (
    (PROVISIONED, 74),
    (DISCOVERED, 15),
    (DEPROVISIONED, 6),
    (FAILED, 5),
)
# The device's own state on its link (gateway.codes.DeviceLinkState) for each portal
# state; the rest are in factory state: never enrolled, a failed first provisioning,
# or reset by an unenrollment.
LINK_STATES = {PROVISIONED: "provisioned", DEPROVISIONED: "deprovisioned"}
FACTORY = "factory"

AREAS = ("Floor 1", "Floor 2", "Floor 3", "Floor 4", "Lobby", "Parking")
UID_RE = re.compile(r"(?P<slug>[a-z0-9-]+)-gw-(?P<number>\d+)")


def _spread(key: str, salt: str, modulo: int) -> int:
    """A stable, well-spread number in ``range(modulo)``."""
    return zlib.crc32(f"{salt}:{key}".encode()) % modulo


def _pick(key: str, salt: str, table):
    """A stable choice from a table whose rows carry their weight (in percent) second."""
    bucket = _spread(key, salt, 100)
    for row in table:
        bucket -= row[1]
        if bucket < 0:
            return row
    return table[0]


def hardware_id(gateway_uid: str, number: int) -> str:
    """A locally administered unicast MAC, from the gateway's UID (unique in the portal)
    and the device's number: unique across organizations, as ``hardware_id`` must be."""
    digest = hashlib.sha256(f"fleetgate-fleet:{gateway_uid}:{number}".encode()).digest()
    octets = [(digest[0] & 0xFC) | 0x02, *digest[1:6]]
    return ":".join(f"{octet:02X}" for octet in octets)


def location(area: str, number: int) -> str:
    if area.startswith("Floor "):
        return f"{area}, room {area.removeprefix('Floor ')}.{number % 24 + 1:02d}"
    if area == "Parking":
        return f"Parking, bay {number % 80 + 1}"
    return f"{area}, {('reception', 'entrance', 'lifts')[number % 3]}"


@dataclass(frozen=True)
class FleetDevice:
    gateway_uid: str
    number: int  # on its gateway; 0 is the gateway itself
    serial: str
    hardware_id: str
    device_type: str
    name: str
    location: str
    area: str
    state: str  # what the portal shows: one of STATE_MIX, or NEW (not in the portal yet)

    @property
    def link_state(self) -> str:
        return LINK_STATES.get(self.state, FACTORY)

    @property
    def seeded(self) -> bool:
        """The portal knows it from the start; a NEW device arrives through enrollment."""
        return self.state != NEW

    @property
    def grouped(self) -> bool:
        """In its floor's group: every placed device ("Provision all" takes each one)."""
        return self.state != NEW


@dataclass(frozen=True)
class Fleet:
    """An organization's gateways and devices. ``devices`` counts what the portal is
    seeded with, the gateways' own device records included; the new devices come on top."""

    slug: str
    gateways: int
    devices: int
    new_per_gateway: int = 0
    areas: tuple[str, ...] = AREAS

    def uid(self, gateway: int) -> str:
        return f"{self.slug}-gw-{gateway:02d}"

    def area(self, gateway: int) -> str:
        return self.areas[(gateway - 1) % len(self.areas)]

    def gateway_name(self, gateway: int) -> str:
        return f"Gateway {gateway:02d} ({self.area(gateway)})"

    def placed(self, gateway: int) -> int:
        """Field devices on ``gateway`` that the portal is seeded with."""
        field, gateways = max(self.devices - self.gateways, 0), self.gateways
        return field // gateways + (1 if gateway <= field % gateways else 0)

    def gateway_device(self, gateway: int) -> FleetDevice:
        uid, area = self.uid(gateway), self.area(gateway)
        return FleetDevice(
            gateway_uid=uid,
            number=0,
            serial=f"GW-{gateway:04d}",
            hardware_id=hardware_id(uid, 0),
            device_type=GATEWAY_TYPE,
            name=self.gateway_name(gateway),
            location=f"{area}, riser cupboard",
            area=area,
            state=PROVISIONED,
        )

    def field_device(self, gateway: int, number: int) -> FleetDevice:
        uid, area = self.uid(gateway), self.area(gateway)
        key = f"{uid}:{number}"
        type_name, _, prefix, kinds = _pick(key, "type", FIELD_MIX)
        kind = kinds[_spread(key, "kind", len(kinds))]
        placed = number <= self.placed(gateway)
        return FleetDevice(
            gateway_uid=uid,
            number=number,
            serial=f"{prefix}-{gateway:02d}-{number:04d}",
            hardware_id=hardware_id(uid, number),
            device_type=type_name,
            name=f"{area} – {kind} {number}",
            location=location(area, number),
            area=area,
            state=_pick(key, "state", STATE_MIX)[0] if placed else NEW,
        )

    def devices_of(self, gateway: int) -> list[FleetDevice]:
        """Everything on ``gateway``'s link: itself, the placed devices, the new ones."""
        last = self.placed(gateway) + self.new_per_gateway
        return [self.gateway_device(gateway)] + [
            self.field_device(gateway, n) for n in range(1, last + 1)
        ]

    def all_devices(self) -> list[FleetDevice]:
        return [d for g in range(1, self.gateways + 1) for d in self.devices_of(g)]


# The demo: ~200 devices in a building of five gateways, ten new devices on each to
# enroll; and a second, small organization to show that tenants never see each other.
DEMO = Fleet("demo", gateways=5, devices=200, new_per_gateway=10)
OTHER = Fleet("other", gateways=1, devices=8, new_per_gateway=2, areas=("Lobby",))
FLEETS = {fleet.slug: fleet for fleet in (DEMO, OTHER)}


def find(gateway_uid: str) -> tuple[Fleet, int] | None:
    """The fleet and gateway number of a demo gateway's UID, or None."""
    match = UID_RE.fullmatch(gateway_uid)
    fleet = FLEETS.get(match["slug"]) if match else None
    if fleet is None or not 1 <= int(match["number"]) <= fleet.gateways:
        return None
    number = int(match["number"])
    return (fleet, number) if fleet.uid(number) == gateway_uid else None
