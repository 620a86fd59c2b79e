"""How the audit log finds a device's entries (registered by ``DevicesConfig.ready``).

The portal's Audit log widget filters by device without importing this app: a device is
named by its serial number, and its entries are those listing its id, plus those of
every bulk operation it took part in — a 10,000-device action keeps only a sample of
ids in its entry, but every device has its Operation row.
"""

from django.urls import reverse

from devices.models import Device, Operation
from portal import audit


def find(organization, serial: str) -> int | None:
    devices = Device.objects.for_organization(organization)
    return devices.filter(serial_number__iexact=serial).values_list("pk", flat=True).first()


def bulks(device_id: int):
    return Operation.objects.filter(device_id=device_id).values("bulk_id")


audit.register_subject(
    audit.Subject(
        "device",
        "Device",
        find=find,
        bulks=bulks,
        url=lambda pk: reverse("devices:detail", args=[pk]),
    )
)
