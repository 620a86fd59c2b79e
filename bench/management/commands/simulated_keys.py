"""Write the labels of an organization's simulated devices as an enrollment list.

Simulated devices derive their access key from their serial number
(``gateway.drivers.simulated.access_key``), as a real device has it printed on its
label; this writes the list an installer would type in, so the demo's batch enrollment
has something true to import.
"""

from django.core.management.base import BaseCommand, CommandError

from devices.models import Gateway
from gateway.drivers.simulated import access_key, serial_number
from portal import exports
from portal.models import Organization


class Command(BaseCommand):
    help = "Write serial,key,gateway lines for the organization's simulated gateways' devices."

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="slug")
        parser.add_argument("--devices", type=int, default=20, help="devices per gateway")
        parser.add_argument("--out", required=True)

    def handle(self, *args, organization, devices, out, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization {organization!r}.")
        uids = list(
            Gateway.objects.for_organization(org).order_by("uid").values_list("uid", flat=True)
        )
        rows = (
            (serial, access_key(serial), uid)
            for uid in uids
            for serial in (serial_number(uid, n) for n in range(1, devices + 1))
        )
        exports.write(out, ["serial", "key", "gateway"], rows)
        self.stderr.write(f"{len(uids) * devices} devices of {len(uids)} gateways written to {out}")
