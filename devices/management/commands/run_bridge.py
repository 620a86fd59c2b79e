"""``manage.py run_bridge``: the portal side of the gateway link, as a long-running process."""

import json
import signal
import threading
import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devices.bridge import STATS_KEY, Bridge
from devices.mqtt import make_client

RETIRE_QUIET_S = 3.0  # nothing more arrived for this long: the session is drained


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
        parser.add_argument(
            "--retire",
            action="store_true",
            help="Take the bridge --client-id out of its group for good: leave the group, "
            "write what its session still holds, then end the session.",
        )

    def handle(self, *args, **options):
        if options["stats"]:
            return self.print_stats()
        bridge = Bridge(client_id=options["client_id"], shared_group=options["shared_group"])
        if options["retire"]:
            if not options["client_id"]:
                raise CommandError("--retire needs the --client-id of the bridge to retire")
            return self.retire(bridge)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: bridge.stop())
        self.stdout.write(f"Bridge {bridge.client_id} subscribing to {bridge.topic}")
        bridge.run(duration=options["seconds"])
        self.stdout.write(json.dumps(dict(bridge.stats), sort_keys=True))

    def retire(self, bridge: Bridge) -> None:
        """A stopped bridge's session outlives it, and a broker keeps handing a shared
        group's messages to it (Mosquitto 2.0: an offline member still gets its share,
        queued). Clearing that session outright would drop what is queued; so resume it,
        leave the group, write what is still queued until nothing more comes, and only
        then replace it with a clean session, which the broker forgets on disconnect."""
        runner = threading.Thread(target=bridge.run, daemon=True)
        runner.start()
        if not bridge.connected.wait(30):
            bridge.stop()
            raise CommandError("the MQTT broker did not accept the bridge's session")
        bridge.client.unsubscribe(bridge.topic)  # no new share; the queued ones still come
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < RETIRE_QUIET_S:
            time.sleep(0.2)
            received = bridge.stats["received"]
            if received != seen or not (bridge.inbox.empty() and bridge.results_inbox.empty()):
                seen, quiet_since = received, time.monotonic()
        bridge.stop()
        runner.join(60)
        ended = threading.Event()
        clean = make_client(bridge.client_id, clean_session=True)
        clean.on_connect = lambda *args: ended.set()
        clean.loop_start()
        try:
            if not ended.wait(30):
                raise CommandError("the MQTT broker did not answer to end the session")
        finally:
            clean.disconnect()
            clean.loop_stop()
        self.stdout.write(
            json.dumps({"retired": bridge.client_id, "written": max(seen, 0)}, sort_keys=True)
        )

    def print_stats(self):
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        for key in sorted(conn.scan_iter(STATS_KEY.format("*"))):
            self.stdout.write(f"{key.decode()}: {conn.get(key).decode()}")
