"""``manage.py broker_check``: does this MQTT broker have what the gateway link needs?"""

import json

from django.core.management.base import BaseCommand, CommandError

from devices.broker_check import CAPABILITIES, check


class Command(BaseCommand):
    help = "Probe the MQTT broker (MQTT_URL) for what Fleetgate needs of it (docs/deploy.md)."

    def add_arguments(self, parser):
        parser.add_argument("--url", default=None, help="another broker than MQTT_URL's")
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args, **options):
        found = check(options["url"])
        if options["json"]:
            self.stdout.write(json.dumps(found, sort_keys=True))
        else:
            for cap in CAPABILITIES:
                mark = "yes" if found[cap.key] else ("NO " if cap.required else "no ")
                self.stdout.write(f"{mark}  {cap.key:<20} {cap.needed_for}")
        missing = [c.key for c in CAPABILITIES if c.required and not found[c.key]]
        if missing:
            raise CommandError(f"this broker lacks what Fleetgate needs: {', '.join(missing)}")
