"""Images in and out: what the upload form, the API, the command and the demo share.

``inspect`` reads an upload once, in chunks: size, SHA-256 and the format check in the
same pass, so an image is never held in memory whole. ``store`` writes the checked file
through the storage API and the row in one step that leaves nothing behind when it
fails: the file is deleted again if the row cannot be written (the same bytes uploaded
twice at once, say). ``delete`` refuses an image an active rollout loads, with the reason.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from django.core.files import File
from django.db import IntegrityError, transaction

from firmware import formats
from firmware.choices import ACTIVE_ROLLOUT_STATES
from firmware.models import FirmwareImage, Rollout, firmware_storage, image_path
from firmware.uploads import max_image_bytes, too_large_message
from portal import audit
from portal.choices import AuditOutcome

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)
EMPTY = "The file is empty."


class ImageRefused(ValueError):
    """Bad input: the message says why, for the field it names."""

    def __init__(self, message: str, field: str = "file"):
        super().__init__(message)
        self.field = field


class DuplicateImage(ImageRefused):
    """These bytes are an image of the organization already."""

    def __init__(self, existing: FirmwareImage):
        super().__init__(duplicate_message(existing))
        self.existing = existing


class ImageInUse(Exception):
    """An active rollout loads this image; the message says which."""


def duplicate_message(existing: FirmwareImage) -> str:
    return (
        f"This file is already image “{existing.filename}”, version {existing.version} "
        f"(uploaded {existing.created_at:%Y-%m-%d}); it was not stored twice."
    )


@dataclass
class Inspection:
    size: int
    sha256: str
    format: formats.ImageFormat
    facts: dict = field(default_factory=dict)  # what the format's header said (version)


def inspect(upload: File, filename: str, *, progress: Progress | None = None) -> Inspection:
    """Hash, measure and format-check ``upload`` in one streaming pass."""
    limit = max_image_bytes()
    image_format = formats.for_filename(filename)
    checker = image_format.checker()
    digest = hashlib.sha256()
    total = upload.size or 0
    size = 0
    if total > limit:
        raise ImageRefused(too_large_message(limit))
    for chunk in upload.chunks(formats.CHUNK):
        size += len(chunk)
        if size > limit:
            raise ImageRefused(too_large_message(limit))
        digest.update(chunk)
        try:
            checker.feed(chunk)
        except formats.FormatError as error:
            raise ImageRefused(str(error)) from None
        if progress:
            progress(size, max(total, size))
    if size == 0:
        raise ImageRefused(EMPTY)
    try:
        facts = checker.finish()
    except formats.FormatError as error:
        raise ImageRefused(str(error)) from None
    return Inspection(size, digest.hexdigest(), image_format, facts)


class _Reporting(File):
    """A file whose ``chunks`` report progress: the storage's write is the second pass."""

    def __init__(self, file, progress: Progress, total: int):
        super().__init__(file.file if isinstance(file, File) else file, name=file.name)
        self.progress, self.total = progress, total

    def chunks(self, chunk_size=None):
        done = 0
        for chunk in super().chunks(chunk_size or formats.CHUNK):
            done += len(chunk)
            self.progress(done, self.total)
            yield chunk


def store(
    organization,
    user,
    upload: File,
    *,
    filename: str,
    inspection: Inspection,
    version: str,
    notes: str,
    device_types,
    progress: Progress | None = None,
) -> FirmwareImage:
    """Write the checked file and its row; raises ``DuplicateImage`` when these bytes are
    an image of the organization already (also when another upload won the race)."""
    existing = FirmwareImage.objects.for_organization(organization).filter(sha256=inspection.sha256)
    if found := existing.first():
        raise DuplicateImage(found)
    image = FirmwareImage(
        organization=organization,
        filename=filename,
        size=inspection.size,
        sha256=inspection.sha256,
        version=version,
        notes=notes,
        format=inspection.format.name,
        uploaded_by=user if getattr(user, "is_authenticated", False) else None,
    )
    storage = firmware_storage()
    content = _Reporting(upload, progress, inspection.size) if progress else upload
    content.seek(0)
    name = storage.save(image_path(image, filename), content)
    try:
        with transaction.atomic():
            image.file.name = name
            image.save()
            image.device_types.set(device_types)
            audit.record(
                organization,
                user,
                "firmware.upload",
                [image],
                filename=filename,
                version=version,
                size=inspection.size,
                sha256=inspection.sha256,
                device_types=sorted(t.name for t in device_types),
            )
    except IntegrityError:
        storage.delete(name)
        winner = existing.first()
        if winner is None:
            raise
        raise DuplicateImage(winner) from None
    except BaseException:
        storage.delete(name)
        raise
    return image


def record_refusal(organization, user, filename: str, reason: str) -> None:
    """A refused upload leaves an audit entry, and nothing else."""
    audit.record(
        organization,
        user,
        "firmware.upload",
        object_type="firmwareimage",
        outcome=AuditOutcome.FAILURE,
        filename=filename[:200],
        reason=reason,
    )


def delete_refusal(image: FirmwareImage) -> str | None:
    """Why ``image`` cannot be deleted now, or None. Finished rollouts keep what they
    loaded in their own fields, so only an active rollout holds an image."""
    active = (
        Rollout.objects.filter(image=image, state__in=ACTIVE_ROLLOUT_STATES)
        .order_by("pk")
        .values_list("pk", "state")
        .first()
    )
    if active:
        return (
            f"Rollout {active[0]} is loading this image ({active[1]}): "
            "it can be deleted once the rollout has finished or been cancelled."
        )
    return None


def delete(image: FirmwareImage, user) -> None:
    """Delete the row and, after commit, the file; ``ImageInUse`` with the reason when an
    active rollout loads it. The row lock makes a rollout being created for the image at
    the same moment wait (it locks the image too) instead of loading a deleted file."""
    with transaction.atomic():
        locked = FirmwareImage.objects.select_for_update().get(pk=image.pk)
        reason = delete_refusal(locked)
        if reason:
            audit.record(
                image.organization,
                user,
                "firmware.delete",
                [locked],
                outcome=AuditOutcome.FAILURE,
                reason=reason,
            )
        else:
            name = locked.file.name
            audit.record(
                image.organization,
                user,
                "firmware.delete",
                [locked],
                filename=locked.filename,
                version=locked.version,
                sha256=locked.sha256,
            )
            locked.delete()
            transaction.on_commit(lambda: firmware_storage().delete(name))
    if reason:
        raise ImageInUse(reason)
