"""Enrollment, in one place for the portal's forms, the batch import, the API and admin.

- ``refusals``: why serial numbers cannot be enrolled now (already enrolled, or a
  request for them is open) — the validation every entry point shares.
- ``create``: records, in one transaction.
- ``send``: enroll through gateways. The devices (created when the portal has not seen
  them yet) take the lifecycle's ``enroll`` action through ``devices.operations.start``:
  seats reserved or the whole send refused, one operation per device carrying the
  access key (encrypted), one dispatch job per gateway.
- ``enroll_one``: one device, recorded and sent (or recorded as done by the app) in one
  transaction — the portal form, the installer pages and the API all come through it.
- ``record_app_enrollment``: the installer app enrolled the device itself over BLE.
- ``follow_operations``: records follow their operations' outcomes (a finish hook).
- ``add_photo``: the installation photo, stored and audited (installer pages and API).
- ``nearby_devices``: what the gateways discovered and nobody enrolled yet (installer, API).
"""

from collections import defaultdict

from django.db import transaction
from django.db.models import Case, CharField, F, OuterRef, Subquery, Value, When
from django.utils import timezone

from devices import lifecycle, operations
from devices.choices import DeviceState, OperationState
from devices.lifecycle import Action
from devices.models import ROW_DEFERRED, Device, DeviceType
from devices.operations import chunks
from enrollment import photos
from enrollment.choices import OPEN_STATUSES, EnrollmentStatus
from enrollment.models import EnrollmentRecord
from licensing import capacity
from portal import audit

ALREADY_ENROLLED = "This device is enrolled already."
ALREADY_REQUESTED = "An enrollment of this device is already pending."
CANCELLED = "The enrollment was cancelled before the gateway ran it."
NO_GATEWAY = "Choose the gateway that enrolls it."

# Device states from which an enrollment may start (the lifecycle decides).
ENROLLABLE = frozenset(lifecycle.states_allowing(Action.ENROLL))


def refusals(organization, serials) -> dict[str, str]:
    """serial → why it cannot be enrolled now; two queries whatever the number of serials."""
    serials = list(dict.fromkeys(serials))
    reasons = {}
    for chunk in chunks(serials):
        for serial, state in (
            Device.objects.for_organization(organization)
            .filter(serial_number__in=chunk)
            .exclude(state__in=ENROLLABLE)
            .values_list("serial_number", "state")
        ):
            if state != DeviceState.UNENROLL_PENDING:
                reasons[serial] = ALREADY_ENROLLED
        for serial in (
            EnrollmentRecord.objects.for_organization(organization)
            .filter(serial_number__in=chunk, status__in=OPEN_STATUSES)
            .values_list("serial_number", flat=True)
        ):
            reasons.setdefault(serial, ALREADY_REQUESTED)
    return reasons


def create(organization, user, rows: list[dict], *, batch=None) -> list[EnrollmentRecord]:
    """Records from validated rows (serial_number, access_key, device_type, gateway, ...)."""
    records = [
        EnrollmentRecord(
            organization=organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            batch=batch,
            **row,
        )
        for row in rows
    ]
    with transaction.atomic():
        EnrollmentRecord.objects.bulk_create(records, batch_size=1000)
        audit.record(
            organization,
            user,
            "enrollment.create",
            object_type="enrollment",
            records=len(records),
            batch=batch.pk if batch else None,
        )
    return records


def send(organization, user, records, target: str = ""):
    """Send open records (and failed ones, as a retry) to their gateways; one transaction.

    Returns the bulk operation, or None when no record could go (each says why).
    Raises ``capacity.CapacityExceeded`` before anything is sent.
    """
    records = [
        r for r in records if r.gateway_id and not r.app_only and r.status != EnrollmentStatus.DONE
    ]
    if not records:
        return None
    now = timezone.now()
    type_names = dict(DeviceType.objects.values_list("pk", "name"))
    with transaction.atomic():
        devices = _devices_for(organization, records)
        params = {
            devices[r.serial_number].pk: {
                "code": r.access_key,
                "device_type": type_names[r.device_type_id][:80],
                **({"name": r.name} if r.name else {}),
                **({"location": r.location_note} if r.location_note else {}),
                "organization": organization.slug[:64],
            }
            for r in records
        }
        try:
            bulk, plan = operations.start(
                organization,
                user,
                Action.ENROLL,
                Device.objects.filter(pk__in=params),
                target or _target(records),
                params=params,
            )
        except operations.NothingToDo as refused:
            bulk, plan = None, refused.plan
        skipped = {row["id"]: row["reason"] for row in plan.skipped}
        outcomes = defaultdict(list)  # (status, reason) -> record ids
        for record in records:
            device = devices[record.serial_number]
            record.device, record.finished_at = device, None
            record.status, record.reason = EnrollmentStatus.IN_PROGRESS, ""
            if device.pk in skipped:
                record.status, record.reason = EnrollmentStatus.FAILED, skipped[device.pk]
                record.finished_at = now
            outcomes[(record.status, record.reason)].append(record.pk)
        # A few UPDATEs (one per outcome), each device found by its serial number.
        device_of = Device.objects.filter(
            organization=organization, serial_number=OuterRef("serial_number")
        ).values("pk")[:1]
        for (status, reason), ids in outcomes.items():
            for chunk in chunks(ids):
                EnrollmentRecord.objects.filter(pk__in=chunk).update(
                    device=Subquery(device_of),
                    status=status,
                    reason=reason,
                    finished_at=now if status == EnrollmentStatus.FAILED else None,
                    updated_at=now,
                )
    return bulk


def _devices_for(organization, records) -> dict[str, Device]:
    """serial → device, creating those the portal has not seen, on the record's gateway."""
    serials = [r.serial_number for r in records]
    existing = {
        d.serial_number: d
        for d in Device.objects.for_organization(organization).filter(serial_number__in=serials)
    }
    new = [
        Device(
            organization=organization,
            serial_number=r.serial_number,
            device_type_id=r.device_type_id,
            gateway_id=r.gateway_id,
            name=r.name,
            location=r.location_note,
            state=lifecycle.INITIAL_STATES["discovered"],
        )
        for r in records
        if r.serial_number not in existing
    ]
    Device.objects.bulk_create(new, batch_size=1000)
    if new:
        existing |= {
            d.serial_number: d
            for d in Device.objects.for_organization(organization).filter(
                serial_number__in=[d.serial_number for d in new]
            )
        }
    # The user chose the gateway: the enrollment goes through it.
    moved = []
    for r in records:
        device = existing[r.serial_number]
        if device.gateway_id != r.gateway_id and device.state in ENROLLABLE:
            device.gateway_id = r.gateway_id
            moved.append(device)
    Device.objects.bulk_update(moved, ["gateway"], batch_size=1000)
    return existing


def _target(records) -> str:
    if len(records) == 1:
        return f"enrollment of {records[0].serial_number}"
    return f"enrollment of {len(records):,} devices"


def enroll_one(organization, user, row: dict, *, app_only=False) -> EnrollmentRecord:
    """Record one device and enroll it at once: through its gateway, or as done by the app.

    All or nothing: ``CapacityExceeded`` leaves nothing stored, so the same request can
    simply be made again. ``IntegrityError``: a request for this serial is already open
    (a race the form's check lost).
    """
    with transaction.atomic():
        if app_only:
            return record_app_enrollment(organization, user, row)
        [record] = create(organization, user, [row])
        send(organization, user, [record])
    return record


def record_app_enrollment(organization, user, row: dict) -> EnrollmentRecord:
    """The installer app enrolled a device itself (BLE, no gateway): record it as done.

    The device is put under management at once — a seat taken, or
    ``CapacityExceeded`` and nothing stored.
    """
    now = timezone.now()
    with transaction.atomic():
        device = (
            Device.objects.for_organization(organization)
            .select_for_update()
            .filter(serial_number=row["serial_number"])
            .first()
        )
        capacity.reserve(organization, 1)
        if device is None:
            device = Device.objects.create(
                organization=organization,
                serial_number=row["serial_number"],
                device_type=row["device_type"],
                name=row.get("name", ""),
                location=row.get("location_note", ""),
                state=lifecycle.INITIAL_STATES["enrolled"],
            )
        else:
            lifecycle.apply(device, Action.ENROLL)
        lifecycle.apply(device, Action.SUCCEED)
        record = EnrollmentRecord.objects.create(
            organization=organization,
            created_by=user,
            app_only=True,
            status=EnrollmentStatus.DONE,
            device=device,
            finished_at=now,
            **row,
        )
        audit.record(
            organization, user, "enrollment.app", [device], object_type="device", record=record.pk
        )
    return record


def follow_operations(state, rows, now) -> None:
    """A finish hook (``devices.operations.FINISH_HOOKS``): enrollments end with their
    operations. Matched by device among the records in progress — a device has one
    enrollment in flight at a time (``send`` moves it to ``enrolling``, which takes no
    second ``enroll``), while a record that failed earlier keeps its reason. One UPDATE
    per chunk, whatever the reasons: each record gets its own operation's."""
    rows = [r for r in rows if r["kind"] == Action.ENROLL]
    if not rows:
        return
    done = state == OperationState.DONE
    status = EnrollmentStatus.DONE if done else EnrollmentStatus.FAILED
    for chunk in chunks(rows, size=2500):  # each device id twice: the filter and a CASE
        by_reason = defaultdict(list)
        for r in chunk:
            by_reason[_reason(state, r)].append(r["device_id"])
        reason = Case(
            *[When(device_id__in=ids, then=Value(text)) for text, ids in by_reason.items()],
            default=Value(""),
            output_field=CharField(),
        )
        EnrollmentRecord.objects.filter(
            device_id__in=[r["device_id"] for r in chunk],
            app_only=False,
            status=EnrollmentStatus.IN_PROGRESS,
        ).update(status=status, reason=reason, finished_at=now, updated_at=now)
    organizations = {r["organization_id"] for r in rows}
    transaction.on_commit(lambda: _refresh(organizations))


def _reason(state, row) -> str:
    """What a record says when its operation ended: nothing, cancelled, or the failure."""
    if state == OperationState.DONE:
        return ""
    if state == OperationState.CANCELLED:
        return CANCELLED
    return (row["error"] or row["code"])[:500]


def _refresh(organization_ids) -> None:
    from portal import live

    for organization_id in organization_ids:
        live.publish(organization_id, "refresh", widgets=["enrollment"])


def retry(organization, user, records):
    """Failed records go again, with the same key (the reason they failed is cleared)."""
    return send(organization, user, [r for r in records if r.can_retry], "retry of enrollment")


def nearby_devices(organization, gateway=None):
    """Devices the organization's gateways report nearby and not enrolled, recent first."""
    devices = (
        Device.objects.for_organization(organization)
        .filter(state=DeviceState.DISCOVERED, gateway__isnull=False)
        .select_related("device_type", "gateway")
        .defer(*ROW_DEFERRED)
        .order_by(F("last_seen").desc(nulls_last=True), "-id")
    )
    return devices.filter(gateway=gateway) if gateway is not None else devices


def add_photo(organization, user, record, jpeg: bytes) -> None:
    """The installation photo (already cleaned by ``photos.clean``), stored and audited."""
    with transaction.atomic():
        photos.attach(record, jpeg)
        audit.record(organization, user, "enrollment.photo", [record.pk], object_type="enrollment")
