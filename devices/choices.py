"""Device states and protocols, with the colour each state wears in the widgets."""

from django.db import models


class DeviceState(models.TextChoices):
    DISCOVERED = "discovered", "Discovered"
    ENROLLING = "enrolling", "Enrolling"
    PROVISIONING = "provisioning", "Provisioning"
    PROVISIONED = "provisioned", "Provisioned"
    DEPROVISIONING = "deprovisioning", "Deprovisioning"
    DEPROVISIONED = "deprovisioned", "Deprovisioned"
    FAILED = "failed", "Failed"
    UNENROLL_PENDING = "unenroll_pending", "Unenroll pending"
    UNENROLLED = "unenrolled", "Unenrolled"


# The vendor's convention: green means provisioned.
STATE_COLOURS = {
    DeviceState.DISCOVERED: "blue",
    DeviceState.ENROLLING: "amber",
    DeviceState.PROVISIONING: "amber",
    DeviceState.PROVISIONED: "green",
    DeviceState.DEPROVISIONING: "amber",
    DeviceState.DEPROVISIONED: "grey",
    DeviceState.FAILED: "red",
    DeviceState.UNENROLL_PENDING: "purple",
    DeviceState.UNENROLLED: "grey",
}

# Event kinds (as gateways report them) and the colour of their badge.
EVENT_KIND_COLOURS = {"alarm": "red", "state": "blue", "telemetry": "grey", "log": "grey"}

IN_FLIGHT_STATES = frozenset(
    {DeviceState.ENROLLING, DeviceState.PROVISIONING, DeviceState.DEPROVISIONING}
)


class Protocol(models.TextChoices):
    BLE = "ble", "BLE mesh"
    LON = "lon", "LON"
    IP = "ip", "IP"
    IOX = "iox", "IOX"
