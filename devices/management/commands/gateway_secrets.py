"""``manage.py gateway_secrets``: hand an organization's gateway secrets to the simulator.

For the demo and benchmarks only: real gateways get their secret once, from the
Gateways widget. The file is written readable by its owner alone.

``--broker-passwords`` also issues each gateway a new broker password (the portal keeps
only its hash, so it cannot hand out the old one) and writes
``{uid: {"secret": …, "broker_password": …}}``; the broker's files are rewritten once.
"""

import json
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from devices import broker, gateway_changes
from devices.models import Gateway
from portal.models import Organization


class Command(BaseCommand):
    help = (
        "Write {uid: secret} of organizations' gateways to a file for `python -m gateway simulate`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, nargs="+", help="organization slug(s)")
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--limit", type=int, default=None, help="at most this many gateways")
        parser.add_argument(
            "--broker-passwords",
            action="store_true",
            help="issue new broker passwords and write them too (for a broker with accounts)",
        )

    def handle(self, *args, **options):
        slugs = options["organization"]
        organizations = list(Organization.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {o.slug for o in organizations})
        if missing:
            raise CommandError(f"No organization with slug {missing[0]!r}.")
        gateways = sorted(
            (g for o in organizations for g in Gateway.objects.for_organization(o)),
            key=lambda g: g.uid,
        )
        if options["limit"]:
            gateways = gateways[: options["limit"]]
        mapping = {}
        with transaction.atomic():
            for gateway in gateways:
                if not gateway.secret:
                    gateway.rotate_secret()
                mapping[gateway.uid] = gateway.secret
                if options["broker_passwords"]:
                    password = broker.issue_password(gateway)
                    # One rewrite of the broker's files below, not one per gateway.
                    Gateway.objects.filter(pk=gateway.pk).update(
                        broker_password_hash=gateway.broker_password_hash
                    )
                    mapping[gateway.uid] = {"secret": gateway.secret, "broker_password": password}
        if options["broker_passwords"] and mapping:
            gateway_changes.changed_many(list(mapping))
        path = options["out"]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(mapping, fh, indent=2)
        self.stdout.write(f"Wrote the secrets of {len(mapping)} gateways to {path}")
