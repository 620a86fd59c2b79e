"""Firmware images, and the rollouts that load them onto devices.

* ``FirmwareImage`` — one file of one organization, stored through Django's storage API
  (the ``"firmware"`` alias of ``STORAGES``), identified by its SHA-256: the same bytes
  uploaded twice are one image.
* ``Rollout`` — the bulk operation of an image load: one-to-one with
  ``devices.BulkOperation`` (which keeps who, what, totals and the per-device
  ``Operation`` rows, kind ``load_image``) plus the staging options and the rollout's
  own state (running, paused, cancelling, finished, cancelled).
* ``ImageLoad`` — one device's part: one-to-one with its ``devices.Operation``, with the
  batch it belongs to and its live progress (phase, bytes, total, percent).

Rollouts and loads are designed here and migrated; the code that creates and drives
them (the Load Image actions, preview, staging, success by reported version) builds on
``devices.operations`` and comes next (issue 12, points 2 and 4–6).
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import storages
from django.db import models
from django.db.models import Q
from django.utils import timezone

from devices.models import BulkOperation, Device, DeviceType, Operation
from firmware.choices import (
    OPEN_LOAD_PHASES,
    ROLLOUT_COLOURS,
    ROLLOUT_TRANSITIONS,
    LoadPhase,
    RolloutState,
)
from portal.models import Organization
from portal.tenancy import OrganizationQuerySet

MAX_VERSION = 64


def same_organization(row, **relations) -> None:
    """``clean()``'s rule: every related row named (field → what it is, in words) belongs
    to the row's own organization."""
    errors = {}
    for name, what in relations.items():
        if not (row.organization_id and getattr(row, f"{name}_id")):
            continue
        if getattr(row, name).organization_id != row.organization_id:
            errors[name] = f"This {what} belongs to another organization."
    if errors:
        raise ValidationError(errors)


def firmware_storage():
    """The storage images live in (a callable, so settings can swap it, tests too)."""
    return storages["firmware"]


def image_path(image, filename: str) -> str:
    """``<organization id>/<sha256>/<file name>``: unique per organization by content."""
    return f"{image.organization_id}/{image.sha256}/{filename}"


class FirmwareImage(models.Model):
    """An image file and what it fits. Rows are written by ``firmware.services.store``
    only, after the file was checked (extension, format, size) and hashed while
    streaming; the file is read back through the storage API, never by local path."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="firmware_images"
    )
    file = models.FileField(upload_to=image_path, storage=firmware_storage, max_length=500)
    filename = models.CharField(max_length=200, help_text="The name it was uploaded with.")
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    sha256 = models.CharField("SHA-256", max_length=64)
    version = models.CharField(
        max_length=MAX_VERSION, help_text="The firmware version devices report once loaded."
    )
    notes = models.TextField("release notes", blank=True, max_length=10_000)
    format = models.CharField(max_length=40, help_text="The format its content was checked as.")
    device_types = models.ManyToManyField(
        DeviceType, related_name="firmware_images", help_text="The device types it fits."
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "sha256"], name="firmwareimage_unique_bytes_per_org"
            ),
        ]
        indexes = [models.Index(fields=["organization", "-id"])]

    def __str__(self):
        return f"{self.filename} {self.version}"


class Rollout(models.Model):
    """The bulk operation of an image load, with its staging options and its state.

    Its primary key is its BulkOperation's, so a rollout and its operations share one id
    in URLs and the API. Staging (what the next part builds, in ``firmware``):

    * batch 0 is the **canary** (``canary_size`` devices; 0 means none), then batches of
      ``batch_size`` devices or ``batch_percent`` % of the devices (exactly one is set);
      ``planned_batches`` is the arithmetic, written once here;
    * a batch is released when the previous one has reached ``success_threshold_percent``
      % done; a batch that finished below it pauses the rollout with the reason, so a
      rollout never waits forever;
    * the rollout pauses itself when more than ``failure_pause_percent`` % of its finished
      loads failed, counted only after ``failure_min_finished`` have finished
      (``should_pause``), so two early failures do not stop a fleet;
    * at most ``gateway_parallel`` loads of this rollout run on one gateway at a time;
    * devices whose gateway is offline wait until ``deadline`` (then their operations
      expire and fail with the reason), instead of failing at once.

    ``image`` may be deleted once the rollout is no longer active (see
    ``firmware.services.delete_refusal``); the ``image_*`` fields keep what was loaded.
    State changes go through ``move`` (a conditional UPDATE), never by assignment.
    """

    bulk = models.OneToOneField(
        BulkOperation, on_delete=models.CASCADE, primary_key=True, related_name="rollout"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    image = models.ForeignKey(
        FirmwareImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts"
    )
    image_filename = models.CharField(max_length=200)
    image_version = models.CharField(max_length=MAX_VERSION)
    image_sha256 = models.CharField(max_length=64)
    image_size = models.PositiveBigIntegerField()

    state = models.CharField(
        max_length=12, choices=RolloutState.choices, default=RolloutState.RUNNING, editable=False
    )
    state_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    pause_reason = models.CharField(
        max_length=500, blank=True, help_text="Why it paused (a user, or a threshold passed)."
    )

    canary_size = models.PositiveIntegerField(
        default=10, help_text="Devices in the first batch; 0 for no canary."
    )
    batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Devices per batch after the canary."
    )
    batch_percent = models.PositiveSmallIntegerField(
        null=True, blank=True, default=25, help_text="Or: per cent of the devices per batch."
    )
    success_threshold_percent = models.PositiveSmallIntegerField(
        default=90, help_text="A batch must reach this share done before the next starts."
    )
    failure_pause_percent = models.PositiveSmallIntegerField(
        default=10, help_text="Pause when more than this share of finished loads failed…"
    )
    failure_min_finished = models.PositiveIntegerField(
        default=10, help_text="…counted once at least this many loads have finished."
    )
    gateway_parallel = models.PositiveIntegerField(
        default=10, help_text="Loads of this rollout running at once on one gateway."
    )
    deadline = models.DateTimeField(
        null=True, blank=True, help_text="Devices not loaded by then fail (offline ones wait)."
    )
    current_batch = models.PositiveIntegerField(
        default=0, help_text="The latest released batch (0 is the canary)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(batch_size__isnull=True) ^ Q(batch_percent__isnull=True)),
                name="rollout_batch_size_or_percent",
            ),
            models.CheckConstraint(
                condition=Q(batch_size__isnull=True) | Q(batch_size__gte=1),
                name="rollout_batch_size_positive",
            ),
            models.CheckConstraint(
                condition=Q(batch_percent__isnull=True)
                | Q(batch_percent__gte=1, batch_percent__lte=100),
                name="rollout_batch_percent_range",
            ),
            models.CheckConstraint(
                condition=Q(success_threshold_percent__gte=1, success_threshold_percent__lte=100),
                name="rollout_success_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(failure_pause_percent__lte=100), name="rollout_failure_pause_range"
            ),
            models.CheckConstraint(
                condition=Q(gateway_parallel__gte=1), name="rollout_gateway_parallel_positive"
            ),
        ]
        indexes = [models.Index(fields=["organization", "state"])]

    def __str__(self):
        return f"Rollout {self.pk}: {self.image_filename} {self.image_version}"

    @property
    def state_colour(self) -> str:
        return ROLLOUT_COLOURS[RolloutState(self.state)]

    def clean(self):
        same_organization(self, image="image", bulk="operation")
        if (self.batch_size is None) == (self.batch_percent is None):
            raise ValidationError("Give a batch size or a batch percentage, not both.")

    def planned_batches(self, total: int) -> list[int]:
        """How many devices each batch takes, canary first, for ``total`` devices."""
        sizes, left = [], total
        canary = min(self.canary_size, left)
        if canary:
            sizes.append(canary)
            left -= canary
        step = self.batch_size or max(1, -(-total * self.batch_percent // 100))
        while left > 0:
            sizes.append(min(step, left))
            left -= sizes[-1]
        return sizes

    def should_pause(self, done: int, failed: int) -> bool:
        """Has the failure rate passed the threshold, with enough loads finished to tell?"""
        finished = done + failed
        if finished < max(1, self.failure_min_finished):
            return False
        return failed * 100 > self.failure_pause_percent * finished

    def move(self, action: str, **fields) -> bool:
        """Take ``action`` (pause, resume, cancel, finish); False when the state forbids it
        or somebody else moved the rollout first (a conditional UPDATE, as in
        ``devices.lifecycle.apply``)."""
        new_state = ROLLOUT_TRANSITIONS.get((self.state, action))
        if new_state is None:
            return False
        now = timezone.now()
        if new_state in (RolloutState.FINISHED, RolloutState.CANCELLED):
            fields.setdefault("finished_at", now)
        updated = Rollout.objects.filter(pk=self.pk, state=self.state).update(
            state=new_state, state_changed_at=now, **fields
        )
        if updated:
            self.state, self.state_changed_at = new_state, now
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)


class ImageLoad(models.Model):
    """One device's image load: its operation, batch and live progress.

    Its primary key is its Operation's. ``released_at`` is set when its batch is
    released; only released loads are sent (the dispatcher's filter). Progress comes
    from the gateway's ``progress`` messages (phase, bytes, total, percent); success is
    the device reporting ``rollout.image_version`` (``reported_version``), not the
    result alone. At most one open load per device (a partial unique constraint): a
    device is in one active rollout at a time, whoever races to add it.
    """

    operation = models.OneToOneField(
        Operation, on_delete=models.CASCADE, primary_key=True, related_name="image_load"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="loads")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="image_loads")
    batch = models.PositiveIntegerField(default=0, help_text="0 is the canary.")
    released_at = models.DateTimeField(null=True, blank=True)
    phase = models.CharField(max_length=12, choices=LoadPhase.choices, default=LoadPhase.WAITING)
    bytes = models.PositiveBigIntegerField(default=0, help_text="Done in the current phase.")
    total = models.PositiveBigIntegerField(default=0)
    percent = models.PositiveSmallIntegerField(default=0)
    from_version = models.CharField(
        max_length=MAX_VERSION, blank=True, help_text="What the device ran before."
    )
    reported_version = models.CharField(
        max_length=MAX_VERSION, blank=True, help_text="What the device reported afterwards."
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["device"],
                condition=Q(phase__in=sorted(OPEN_LOAD_PHASES)),
                name="imageload_one_open_load_per_device",
                violation_error_message="This device is loading an image in another rollout.",
            ),
            models.CheckConstraint(condition=Q(percent__lte=100), name="imageload_percent_range"),
        ]
        indexes = [
            models.Index(fields=["rollout", "phase"]),
            models.Index(fields=["rollout", "batch"]),
            models.Index(fields=["device", "-operation"]),
        ]

    def __str__(self):
        return f"Image load {self.pk} ({self.phase} {self.percent}%)"

    def clean(self):
        same_organization(self, rollout="rollout", device="device", operation="operation")
