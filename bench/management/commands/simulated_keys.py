"""Write the labels of an organization's simulated devices as an enrollment list.

Simulated devices derive their access key from their serial number
(``gateway.drivers.simulated.access_key``), as a real device has it printed on its
label; this writes the list an installer would type in, so the demo's batch enrollment
has something true to import.

For the demo fleet's gateways (``gateway.fleet``) the list names the devices still in
their boxes — on the link, in factory state, not in the portal yet — with their type,
gateway, name and location, so it imports as written. Any other gateway is taken to
run ``simulate`` without ``--fleet``: its first ``--devices`` anonymous devices are
listed, without a type (the import asks for one).
"""

from django.core.management.base import BaseCommand, CommandError

from devices.models import Gateway
from enrollment.batch import COLUMNS
from gateway import fleet
from gateway.drivers.simulated import access_key, serial_number
from portal import exports
from portal.models import Organization


def rows_for(uid: str, devices: int):
    """(serial, key, type, gateway, name, location) of one gateway's devices to enroll."""
    found = fleet.find(uid)
    if found is None:
        for n in range(1, devices + 1):
            serial = serial_number(uid, n)
            yield serial, access_key(serial), "", uid, "", ""
        return
    for device in found[0].devices_of(found[1]):
        if device.state == fleet.NEW:
            yield (
                device.serial,
                access_key(device.serial),
                device.device_type,
                uid,
                device.name,
                device.location,
            )


class Command(BaseCommand):
    help = "Write an enrollment list (serial, key, type, gateway, name, location) of the organization's simulated devices."

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="slug")
        parser.add_argument(
            "--devices",
            type=int,
            default=20,
            help="devices per gateway, for gateways outside the demo fleet",
        )
        parser.add_argument("--out", required=True)

    def handle(self, *args, organization, devices, out, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization {organization!r}.")
        uids = list(
            Gateway.objects.for_organization(org).order_by("uid").values_list("uid", flat=True)
        )
        rows = [row for uid in uids for row in rows_for(uid, devices)]
        exports.write(out, COLUMNS, rows)
        self.stdout.write(f"{len(rows)} devices of {len(uids)} gateways written to {out}")
