"""``manage.py run_bridge``: the portal side of the gateway link, as a long-running process."""

import json
import signal

import redis
from django.conf import settings
from django.core.management.base import BaseCommand

from devices.bridge import STATS_KEY, Bridge


class Command(BaseCommand):
    help = "Subscribe to every gateway over MQTT; persist what they say and push it live."

    def add_arguments(self, parser):
        parser.add_argument(
            "--shared-group",
            default=None,
            help="MQTT shared subscription group; bridges with the same group split the load.",
        )
        parser.add_argument("--client-id", default=None, help="Stable id for a persistent session.")
        parser.add_argument("--seconds", type=float, default=None, help="Stop after this long.")
        parser.add_argument("--stats", action="store_true", help="Print running bridges' counters.")

    def handle(self, *args, **options):
        if options["stats"]:
            return self.print_stats()
        bridge = Bridge(client_id=options["client_id"], shared_group=options["shared_group"])
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: bridge.stop())
        self.stdout.write(f"Bridge {bridge.client_id} subscribing to {bridge.topic}")
        bridge.run(duration=options["seconds"])
        self.stdout.write(json.dumps(dict(bridge.stats), sort_keys=True))

    def print_stats(self):
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        for key in sorted(conn.scan_iter(STATS_KEY.format("*"))):
            self.stdout.write(f"{key.decode()}: {conn.get(key).decode()}")
