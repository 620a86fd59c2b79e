"""Choice sets shared by the portal: role groups and audit outcomes."""

from django.db import models


class Role(models.TextChoices):
    ADMINISTRATOR = "administrator", "Administrator"
    DEVICE_MANAGER = "device_manager", "Device Manager"
    IOT_MANAGER = "iot_manager", "IoT Manager"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
    CANCELLED = "cancelled", "Cancelled"


# How each outcome looks in the Audit log widget.
AUDIT_OUTCOME_COLOURS = {
    AuditOutcome.SUCCESS: "green",
    AuditOutcome.PARTIAL: "amber",
    AuditOutcome.FAILURE: "red",
    AuditOutcome.DENIED: "red",
    AuditOutcome.CANCELLED: "grey",
}
