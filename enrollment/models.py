"""Enrollment records: a device's serial number and access key, on their way to a device.

A record is the request ("put this device under management"); the device row is the
result. Access keys are encrypted at rest and never leave the server again: lists,
the API and the admin show only whether a key is set.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from devices.models import Device, DeviceType, Gateway, Operation
from enrollment.choices import OPEN_STATUSES, EnrollmentStatus
from portal.crypto import EncryptedTextField
from portal.models import Organization
from portal.tenancy import OrganizationQuerySet
from portal.validators import validate_name


class EnrollmentBatch(models.Model):
    """One import (a pasted or uploaded list): its records, and the rows refused."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=255, blank=True, help_text="File name, or “pasted”.")
    rows = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "enrollment batches"

    def __str__(self):
        return f"Batch {self.pk} ({self.accepted} records)"


class EnrollmentRecord(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    serial_number = models.CharField(max_length=64)
    access_key = EncryptedTextField(help_text="Encrypted; never shown again.")
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="+")
    gateway = models.ForeignKey(
        Gateway,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The gateway that enrolls the device; empty for app-only enrollment.",
    )
    app_only = models.BooleanField(
        default=False, help_text="Enrolled by the installer app itself, over BLE."
    )
    status = models.CharField(
        max_length=12, choices=EnrollmentStatus.choices, default=EnrollmentStatus.PENDING
    )
    reason = models.CharField(max_length=500, blank=True)
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="enrollments"
    )
    operation = models.ForeignKey(
        Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    batch = models.ForeignKey(
        EnrollmentBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="records"
    )
    name = models.CharField(max_length=120, blank=True, validators=[validate_name])
    location_note = models.CharField(max_length=255, blank=True, validators=[validate_name])
    photo = models.ImageField(upload_to="enrollment/photos/%Y/%m/", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One open request per device: a second would race the first to the gateway.
            models.UniqueConstraint(
                fields=["organization", "serial_number"],
                condition=Q(status__in=["pending", "in_progress"]),
                name="enrollment_one_open_record_per_serial",
            )
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-id"]),
            models.Index(fields=["organization", "serial_number"]),
        ]

    def __str__(self):
        return f"{self.serial_number} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def can_retry(self) -> bool:
        return self.status == EnrollmentStatus.FAILED and not self.app_only
