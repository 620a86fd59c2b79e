"""The inventory: gateways, device types, devices and groups."""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from devices.choices import STATE_COLOURS, DeviceState, Protocol
from devices.lifecycle import allowed_actions
from portal.crypto import EncryptedTextField
from portal.models import Organization
from portal.tenancy import OrganizationQuerySet


class DeviceType(models.Model):
    """A kind of device, shared by every organization (the vendor's catalogue)."""

    name = models.CharField(max_length=80, unique=True)
    protocol = models.CharField(max_length=8, choices=Protocol.choices)
    image_extensions = models.JSONField(
        default=list,
        blank=True,
        help_text='Firmware image file extensions it accepts, e.g. [".apb", ".ndl", ".nx", ".nxi"].',
    )
    replace_needs_manual_reset = models.BooleanField(
        default=False, help_text="Replacing a unit needs a manual reset on site."
    )
    is_gateway = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if not isinstance(self.image_extensions or [], list):
            raise ValidationError({"image_extensions": 'Give a list, e.g. [".apb", ".nx"].'})
        cleaned = []
        for ext in self.image_extensions or []:
            if not isinstance(ext, str) or not ext.strip():
                raise ValidationError({"image_extensions": "Each extension must be text."})
            ext = ext.strip().lower()
            cleaned.append(ext if ext.startswith(".") else f".{ext}")
        self.image_extensions = cleaned

    def accepts_image(self, filename: str) -> bool:
        return any(filename.lower().endswith(ext) for ext in self.image_extensions)


class Gateway(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="gateways"
    )
    uid = models.CharField(
        "UID",
        max_length=64,
        unique=True,
        help_text="Names the gateway's MQTT topics; letters, digits, '-' and '_'.",
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Use letters, digits, '-' and '_' only.")],
    )
    name = models.CharField(max_length=120)
    is_online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    secret = EncryptedTextField(help_text="Signs every message of the gateway link (HMAC-SHA256).")
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    agent_info = models.JSONField(
        default=dict, blank=True, help_text="What the agent said in its last hello."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["organization", "name"])]

    def __str__(self):
        return self.name or self.uid


class DeviceGroup(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="device_groups"
    )
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                "organization", Lower("name"), name="devicegroup_unique_name_per_org"
            ),
        ]

    def __str__(self):
        return self.name

    def validate_constraints(self, exclude=None):
        # Give the case-insensitive uniqueness a sentence people understand.
        clash = DeviceGroup.objects.filter(
            organization_id=self.organization_id, name__iexact=self.name
        ).exclude(pk=self.pk)
        if self.organization_id and clash.exists():
            raise ValidationError({"name": "A group with this name already exists."})
        super().validate_constraints(exclude=exclude)


class Device(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="devices")
    device_type = models.ForeignKey(DeviceType, on_delete=models.PROTECT, related_name="devices")
    serial_number = models.CharField(max_length=64)
    hardware_id = models.CharField(
        "MAC address or UID", max_length=64, null=True, blank=True, default=None
    )
    name = models.CharField(max_length=120, blank=True)
    gateway = models.ForeignKey(
        Gateway, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="devices")
    state = models.CharField(
        max_length=20, choices=DeviceState.choices, default=DeviceState.DISCOVERED, editable=False
    )
    location = models.CharField(max_length=255, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["serial_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "serial_number"], name="device_unique_serial_per_org"
            ),
            models.UniqueConstraint(fields=["hardware_id"], name="device_unique_hardware_id"),
        ]
        # The Devices widget's sorts and filters, each ending in id (its tiebreaker) so
        # PostgreSQL can read a deep page off the index instead of sorting 100,000 rows.
        indexes = [
            models.Index(fields=["organization", "serial_number", "id"]),
            models.Index(fields=["organization", "state", "serial_number", "id"]),
            models.Index(fields=["organization", "name", "id"]),
            models.Index(fields=["organization", "hardware_id"]),
            models.Index(fields=["organization", "device_type", "serial_number", "id"]),
            models.Index(fields=["organization", "gateway", "serial_number", "id"]),
            models.Index(fields=["organization", "updated_at", "id"]),
        ]

    def __str__(self):
        return self.name or self.serial_number

    def save(self, *args, **kwargs):
        self.hardware_id = self.normalise_hardware_id(self.hardware_id)
        super().save(*args, **kwargs)

    @staticmethod
    def normalise_hardware_id(value):
        """MAC/UIDs compare case-insensitively and blank means none."""
        return (value or "").strip().upper() or None

    def clean(self):
        self.hardware_id = self.normalise_hardware_id(self.hardware_id)
        if (
            self.gateway_id
            and self.organization_id
            and self.gateway.organization_id != self.organization_id
        ):
            raise ValidationError({"gateway": "This gateway belongs to another organization."})

    @property
    def state_colour(self) -> str:
        return STATE_COLOURS[DeviceState(self.state)]

    @property
    def allowed_actions(self) -> set[str]:
        return allowed_actions(self.state)


class DeviceEvent(models.Model):
    """Something a gateway reported: a device event, a discovery, a state change.

    Written in batches by the bridge (thousands a second), read newest first.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    gateway = models.ForeignKey(
        Gateway, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    device = models.ForeignKey(
        Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    kind = models.CharField(max_length=32)
    message = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "-id"]),
            models.Index(fields=["organization", "kind", "-id"]),
            models.Index(fields=["device", "-id"]),
            models.Index(fields=["organization", "received_at"]),
        ]

    def __str__(self):
        return f"{self.kind} {self.device or self.gateway} {self.occurred_at:%H:%M:%S}"
