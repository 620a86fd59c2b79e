"""The inventory (gateways, device types, devices, groups) and the operations on it."""

import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Case, CharField, Count, OuterRef, Prefetch, Subquery, Value, When
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from devices.choices import (
    STATE_COLOURS,
    DeviceState,
    OperationState,
    Protocol,
)
from devices.lifecycle import allowed_actions
from portal.crypto import EncryptedTextField
from portal.models import Organization
from portal.tenancy import OrganizationQuerySet
from portal.validators import validate_name

# Never loaded for a list: the gateway's secret would be decrypted once per row.
ROW_DEFERRED = ("gateway__secret", "gateway__agent_info", "device_type__image_extensions")


class GatewayQuerySet(OrganizationQuerySet):
    def with_device_count(self):
        """``device_count``: a correlated subquery, not a join, so a list's COUNT(*) can
        drop it."""
        devices = Device.objects.filter(gateway=OuterRef("pk")).order_by().values("gateway")
        count = Coalesce(Subquery(devices.annotate(n=Count("pk")).values("n")), 0)
        return self.annotate(device_count=count)

    def for_list(self):
        """Rows of a gateway list (widget, API): never the secret, with ``device_count``."""
        return self.defer("secret").with_device_count()


class DeviceGroupQuerySet(OrganizationQuerySet):
    def with_device_count(self):
        return self.annotate(device_count=Count("devices"))


class DeviceQuerySet(OrganizationQuerySet):
    def with_relations(self):
        """What a device row shows (the widget, the API, the device page): its type, its
        gateway and its groups, in three queries whatever the number of rows.

        The groups are a plain list per device (``group_list``): templates read it twice
        per row, and every ``device.groups`` access would build a new related manager.
        """
        groups = Prefetch(
            "groups", queryset=DeviceGroup.objects.only("pk", "name"), to_attr="group_list"
        )
        return (
            self.select_related("device_type", "gateway")
            .defer(*ROW_DEFERRED)
            .prefetch_related(groups)
        )

    def with_failure(self):
        """Annotate ``failure``: a failed device's reason, from its latest failed operation,
        so a list row says why (a subquery in the rows' own query, read only for failed rows).
        """
        latest_failed = (
            Operation.objects.filter(device=OuterRef("pk"), state=OperationState.FAILED)
            .order_by("-id")
            .values("error")[:1]
        )
        return self.annotate(
            failure=Case(
                When(state=DeviceState.FAILED, then=Subquery(latest_failed)),
                default=Value(""),
                output_field=CharField(),
            )
        )


class OperationQuerySet(OrganizationQuerySet):
    def failed_of(self, bulk):
        """The failed operations of ``bulk`` with their device and reason, in order."""
        return (
            self.filter(bulk=bulk, state=OperationState.FAILED)
            .select_related("device", "gateway")
            .only(
                "device__serial_number",
                "device__state",
                "gateway__name",
                "code",
                "error",
                "attempts",
                "finished_at",
            )
            .order_by("id")
        )


class DeviceType(models.Model):
    """A kind of device, shared by every organization (the vendor's catalogue)."""

    name = models.CharField(max_length=80, unique=True, validators=[validate_name])
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
    name = models.CharField(max_length=120, validators=[validate_name])
    is_online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    secret = EncryptedTextField(help_text="Signs every message of the gateway link (HMAC-SHA256).")
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    agent_info = models.JSONField(
        default=dict, blank=True, help_text="What the agent said in its last hello."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = GatewayQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["organization", "name"])]

    def __str__(self):
        return self.name or self.uid

    @staticmethod
    def unused_uid() -> str:
        """A short ``gw-…`` UID that no gateway has yet (for a form left blank)."""
        for _ in range(10):
            uid = f"gw-{secrets.token_hex(4)}"
            if not Gateway.objects.filter(uid=uid).exists():
                return uid
        return f"gw-{secrets.token_hex(12)}"  # 10 collisions in 4 billion: just go longer

    def new_secret(self) -> str:
        """Give the gateway a fresh secret (not saved yet) and return it.

        The secret signs the gateway's whole link, so the caller shows it exactly once:
        in the answer to the request that made it, never cached, never logged.
        """
        self.secret = secrets.token_urlsafe(32)
        self.secret_rotated_at = timezone.now()
        return self.secret

    def rotate_secret(self) -> str:
        """A new secret, saved: the old one stops signing from now on."""
        secret = self.new_secret()
        self.save(update_fields=["secret", "secret_rotated_at"])
        return secret


class DeviceGroup(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="device_groups"
    )
    name = models.CharField(max_length=120, validators=[validate_name])
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceGroupQuerySet.as_manager()

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
    name = models.CharField(max_length=120, blank=True, validators=[validate_name])
    gateway = models.ForeignKey(
        Gateway, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    groups = models.ManyToManyField(DeviceGroup, blank=True, related_name="devices")
    state = models.CharField(
        max_length=20, choices=DeviceState.choices, default=DeviceState.DISCOVERED, editable=False
    )
    location = models.CharField(max_length=255, blank=True)
    reported_state = models.CharField(
        max_length=16,
        blank=True,
        help_text="What the device said of itself when a gateway last discovered it "
        "(factory, provisioned, deprovisioned).",
    )
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)

    objects = DeviceQuerySet.as_manager()

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


class BulkOperation(models.Model):
    """One user action on one or many devices: who, what, on what, and how far it got.

    The counters are advanced by the same conditional UPDATEs that finish operations,
    so they are exact without counting rows.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20)  # a lifecycle Action
    target = models.CharField(max_length=255, help_text="What the user chose, in words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    skipped = models.JSONField(
        default=list, blank=True, help_text="Devices left out, with the reason for each."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization", "-id"])]

    def __str__(self):
        return f"{self.get_kind_display()} {self.target}"

    def get_kind_display(self):
        from devices.lifecycle import Action

        return Action(self.kind).label if self.kind in Action.values else self.kind

    @property
    def finished_count(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def is_running(self) -> bool:
        return self.finished_count < self.total

    @property
    def percent(self) -> int:
        return 100 if not self.total else self.finished_count * 100 // self.total

    @property
    def waiting(self) -> int:
        """Devices not answered yet: queued, at their gateway, or waiting for it."""
        return max(0, self.total - self.finished_count)

    @property
    def segments(self) -> list[dict]:
        """The progress bar's parts in order (done, failed, cancelled, waiting), each with
        its offset, so the bar needs no inline style (a strict CSP allows none)."""
        parts, x = [], 0
        for key, count in (
            ("done", self.done),
            ("failed", self.failed),
            ("cancelled", self.cancelled),
            ("waiting", self.waiting),
        ):
            parts.append({"key": key, "count": count, "x": x})
            x += count
        return parts


class Operation(models.Model):
    """One device's part of a bulk operation; the database is its source of truth.

    ``uid`` and ``generation`` make its wire id: a re-send after a lost answer keeps
    the id (the gateway answers from its memory), a retry after a failure bumps the
    generation (the gateway must really try again).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    bulk = models.ForeignKey(BulkOperation, on_delete=models.CASCADE, related_name="operations")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="operations")
    gateway = models.ForeignKey(
        Gateway, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations"
    )
    kind = models.CharField(max_length=20)  # a lifecycle Action
    uid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    generation = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=OperationState.choices, default=OperationState.QUEUED
    )
    from_state = models.CharField(max_length=20, help_text="The device's state before.")
    attempts = models.PositiveSmallIntegerField(default=0)
    claim = models.UUIDField(null=True, blank=True, editable=False)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True, help_text="Answer due by.")
    expires_at = models.DateTimeField(help_text="Give up waiting (e.g. for an offline gateway).")
    code = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=500, blank=True)
    params = EncryptedTextField(
        default="",
        help_text="Extra parameters for the gateway, as JSON; encrypted because an "
        "enrollment's access key travels here.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = OperationQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["state", "gateway", "next_attempt_at"]),
            models.Index(fields=["state", "deadline"]),
            models.Index(fields=["state", "expires_at"]),
            models.Index(fields=["bulk", "state"]),
            models.Index(fields=["claim"]),
            models.Index(fields=["device", "-id"]),
        ]

    def __str__(self):
        return f"{self.kind} {self.device_id} ({self.state})"

    @property
    def wire_id(self) -> str:
        return f"{self.uid.hex}-{self.generation}"
