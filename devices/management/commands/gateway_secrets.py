"""``manage.py gateway_secrets``: hand an organization's gateway secrets to the simulator.

For the demo and benchmarks only: real gateways get their secret once, from the
Gateways widget. The file is written readable by its owner alone.
"""

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from devices.models import Gateway
from portal.models import Organization


class Command(BaseCommand):
    help = "Write {uid: secret} of an organization's gateways to a file for `python -m gateway simulate`."

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="organization slug")
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--limit", type=int, default=None, help="at most this many gateways")

    def handle(self, *args, **options):
        try:
            organization = Organization.objects.get(slug=options["organization"])
        except Organization.DoesNotExist:
            raise CommandError(f"No organization with slug {options['organization']!r}.") from None
        gateways = Gateway.objects.for_organization(organization).order_by("uid")
        if options["limit"]:
            gateways = gateways[: options["limit"]]
        mapping = {}
        for gateway in gateways:
            if not gateway.secret:
                gateway.rotate_secret()
            mapping[gateway.uid] = gateway.secret
        path = options["out"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(mapping, fh, indent=2)
        self.stdout.write(f"Wrote the secrets of {len(mapping)} gateways to {path}")
