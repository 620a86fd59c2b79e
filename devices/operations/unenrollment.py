"""Unenrollment: a deleted device leaves management at once and is told so when it can be.

Deleting moves devices to ``unenroll_pending`` (seats freed) and starts an ``unenroll``
operation for each through ``starting.start``; a gateway's hello sends again what
still waits (an operation that expired while the gateway was away).
"""

from django.db import transaction
from django.utils import timezone

from devices import lifecycle
from devices.choices import OPEN_OPERATION_STATES, DeviceState
from devices.lifecycle import Action
from devices.models import BulkOperation, Device
from devices.operations.base import chunks
from devices.operations.dispatch import dispatch_waiting
from devices.operations.starting import NothingToDo, start
from portal import audit, live
from portal.models import Organization

UNENROLL_TARGET = "unenrollment of deleted devices"


def delete_devices(organization, user, devices, target: str) -> int:
    """Delete (unenroll) devices: they leave management at once, seats freed, and are
    sent their unenrollment — which waits for an offline gateway, and is sent again
    whenever their gateway says hello until the device acknowledges it."""
    with transaction.atomic():
        ids = list(
            devices.filter(state__in=lifecycle.states_allowing(Action.DELETE)).values_list(
                "pk", flat=True
            )
        )
        for chunk in chunks(ids):
            lifecycle.apply_bulk(Device.objects.filter(pk__in=chunk), Action.DELETE)
        audit.record(organization, user, "device.delete", ids, object_type="device", target=target)
        _send_unenrollments(organization, user, Device.objects.filter(pk__in=ids), target)
        transaction.on_commit(
            lambda: live.publish(organization.pk, "refresh", widgets=["devices", "licenses"])
        )
    return len(ids)


def _send_unenrollments(organization, user, devices, target) -> BulkOperation | None:
    waiting = devices.filter(
        organization=organization, state=DeviceState.UNENROLL_PENDING, gateway__isnull=False
    ).exclude(operations__state__in=OPEN_OPERATION_STATES)
    try:
        return start(organization, user, Action.UNENROLL, waiting, target)[0]
    except NothingToDo:
        return None


def gateways_back(gateways, now) -> None:
    """Gateways said hello: send the unenrollments their deleted devices still wait for,
    and whatever else waited for them, without waiting for the reconciler's next pass.

    Registered in ``devices.ingest.HELLO_HANDLERS``; two queries when nothing waits.
    """
    gateway_ids = [g.id for g in gateways]
    waiting = (
        Device.objects.filter(gateway_id__in=gateway_ids, state=DeviceState.UNENROLL_PENDING)
        .exclude(operations__state__in=OPEN_OPERATION_STATES)
        .values_list("organization_id", flat=True)
        .distinct()
    )
    for organization in Organization.objects.filter(pk__in=list(waiting)):
        devices = Device.objects.filter(gateway_id__in=gateway_ids)
        _send_unenrollments(organization, None, devices, UNENROLL_TARGET)
    dispatch_waiting(gateway_ids, now or timezone.now())
