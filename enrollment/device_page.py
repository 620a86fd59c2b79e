"""The device page's enrollment parts: the installation photo and the enrollment
records in the timeline (registered from ``EnrollmentConfig.ready``; the devices app
knows no enrollment record)."""

from django.urls import reverse

from devices.device_page import Entry, Panel
from enrollment.models import EnrollmentRecord, EnrollmentStatus

STATUS_COLOURS = {
    EnrollmentStatus.PENDING: "grey",
    EnrollmentStatus.IN_PROGRESS: "blue",
    EnrollmentStatus.DONE: "green",
    EnrollmentStatus.FAILED: "red",
}


def photo_panel(device):
    """The newest installation photo taken when the device was enrolled, if any."""
    record = (
        EnrollmentRecord.objects.filter(device=device)
        .exclude(photo="")
        .only("pk", "photo", "created_at", "location_note", "created_by__username")
        .select_related("created_by")
        .order_by("-id")
        .first()
    )
    context = {"record": record, "device": device}
    if record:
        context["photo_url"] = reverse("api:enrollment-photo", args=[record.pk])
    return Panel("photo", "Installation photo", "enrollment/_device_photo.html", context)


def records(device, limit):
    rows = (
        EnrollmentRecord.objects.filter(device=device)
        .select_related("gateway", "created_by")
        .only(
            "status",
            "reason",
            "app_only",
            "created_at",
            "finished_at",
            "gateway__name",
            "created_by__username",
        )
        .order_by("-id")[:limit]
    )
    entries = []
    for record in rows:
        through = (
            "by the installer app"
            if record.app_only
            else f"through {record.gateway.name}"
            if record.gateway
            else ""
        )
        who = record.created_by.get_username() if record.created_by else "system"
        entries.append(
            Entry(
                at=record.finished_at or record.created_at,
                kind="enrollment",
                title=f"Enrollment {through}".strip(),
                detail=record.reason or f"requested by {who}",
                badge=record.get_status_display(),
                colour=STATUS_COLOURS.get(record.status, "grey"),
            )
        )
    return entries
