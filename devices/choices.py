"""Device states, protocols and operation states, with the colour each state wears."""

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


class OperationState(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


OPEN_OPERATION_STATES = (OperationState.QUEUED, OperationState.SENT)
OPERATION_STATE_COLOURS = {
    OperationState.QUEUED: "blue",
    OperationState.SENT: "blue",
    OperationState.DONE: "green",
    OperationState.FAILED: "red",
    OperationState.CANCELLED: "amber",
}
