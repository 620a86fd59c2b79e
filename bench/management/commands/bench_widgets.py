"""Benchmark the Devices widget over many devices; print one JSON line.

Which database: the one ``DATABASE_URL`` names — but never the demo database. When
``DATABASE_URL`` is unset the command switches to a scratch SQLite file
(``--database-file``, default ``var/bench.sqlite3``) before it touches any database,
and migrates it. So ``manage.py bench_widgets`` alone never pollutes the demo, and
``DATABASE_URL=postgres://… manage.py bench_widgets`` measures PostgreSQL.

The devices live in their own organization (slug ``bench``); missing ones are created
with the demo generator (``devices.demo``), existing ones are reused. Each kind of
request is timed in-process through ``django.test.Client`` — server time without
the network — after a few warm-up requests.
"""

import json
import math
import statistics
import time
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from bench.harness import percentile
from devices import demo
from devices.choices import DeviceState
from devices.models import Device, DeviceType
from portal.choices import Role
from portal.progress import ProgressBar

WARM_UP = 3


class Command(BaseCommand):
    help = "Time the Devices widget over N devices (first, filtered, search, deep page); one JSON line."

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=100_000)
        parser.add_argument("--requests", type=int, default=50, help="Timed requests per kind.")
        parser.add_argument("--gateways", type=int, default=50)
        parser.add_argument(
            "--database-file",
            default=str(settings.VAR_DIR / "bench.sqlite3"),
            help="Scratch SQLite file used when DATABASE_URL is unset.",
        )

    def handle(self, *args, devices, requests, gateways, database_file, **options):
        if devices < gateways or requests < 1:
            raise CommandError("--devices must be at least --gateways, and --requests at least 1.")
        self.stderr.style_func = None  # progress and notes, not errors: no red
        self._use_scratch_database(Path(database_file))
        call_command("migrate", interactive=False, verbosity=0)
        organization, user = self._inventory(devices, gateways)
        try:
            url = reverse("devices:widget")
        except NoReverseMatch as exc:
            raise CommandError(
                "The Devices widget URL (devices:widget) does not exist yet."
            ) from exc
        host = next((h for h in settings.ALLOWED_HOSTS if h[:1] not in ("*", ".")), "localhost")
        # What the widget on the dashboard sends when searching, filtering or paging.
        client = Client(
            SERVER_NAME=host,
            headers={
                "HX-Request": "true",
                "HX-Target": "devices-results",
                "HX-Current-URL": f"http://{host}/",
            },
        )
        client.force_login(user)

        total = Device.objects.filter(organization=organization).count()
        kinds, needle = self._request_kinds(organization)
        results, all_ms = {}, []
        for kind, params in kinds.items():
            timings = self._time(client, url, params, requests)
            all_ms += timings
            results[kind] = {
                "p50_ms": round(statistics.median(timings), 1),
                "p95_ms": round(percentile(timings, 95), 1),
                "params": urlencode(params),
            }
        queries = {str(n): self._count_queries(client, url, {"per_page": n}) for n in (25, 200)}
        found = needle in self._get(client, url, kinds["search"]).content.decode()
        self.stderr.write(
            f"sanity: the widget answered 200 to all {len(all_ms) + len(kinds) * WARM_UP + 3} "
            f"requests ({url}, organization {organization.slug!r}, {total:,} devices, "
            f"DEBUG={settings.DEBUG}); the search for {kinds['search']['q']!r} "
            + ("lists " if found else "does NOT list ")
            + needle
        )
        line = {
            "devices": total,
            "database": connection.vendor,
            "p50_ms": round(statistics.median(all_ms), 1),
            "p95_ms": max(r["p95_ms"] for r in results.values()),
            "per_kind": results,
            "queries_per_page": queries,
        }
        self.stdout.write(json.dumps(line))

    def _use_scratch_database(self, path: Path):
        """Never the demo database: without DATABASE_URL, point 'default' at a scratch file."""
        demo_file = Path(settings.VAR_DIR) / "fleetgate.sqlite3"
        if (
            connection.vendor != "sqlite"
            or Path(str(connection.settings_dict["NAME"])) != demo_file
        ):
            return  # DATABASE_URL (or a test database) decides
        path.parent.mkdir(parents=True, exist_ok=True)
        connection.close()
        connection.settings_dict["NAME"] = path  # how Django's own test runner switches databases
        self.stderr.write(f"DATABASE_URL is unset: using the scratch database {path}")

    def _inventory(self, devices, gateways):
        result = demo.SeedResult()
        organization = demo.ensure_organization("bench", "Bench Organization", result)
        have = Device.objects.filter(organization=organization).count()
        if have >= devices:
            self.stderr.write(f"Using the existing {have:,} devices of organization 'bench'.")
        else:
            self.stderr.write(f"Creating {devices - have:,} devices in organization 'bench' …")
            started = time.perf_counter()
            demo.seed_organization(
                organization,
                devices=devices,
                gateways=gateways,
                progress=ProgressBar(self.stderr, "devices"),
                result=result,
            )
            if connection.vendor == "postgresql":  # what autovacuum would do a minute later
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE")
            self.stderr.write(f"Created in {time.perf_counter() - started:.1f} s.")
        user = demo.ensure_member(
            organization,
            "bench",
            (Role.ADMINISTRATOR,),
            demo.DemoPassword("bench-not-for-login"),
            result,
        )
        return organization, user

    def _request_kinds(self, organization):
        """The four kinds of request, and a serial the search must find."""
        ble = DeviceType.objects.get(name="BLE Mesh Node")
        devices = Device.objects.filter(organization=organization)
        bles = devices.filter(device_type=ble).order_by("serial_number")
        needle = bles.values_list("serial_number", flat=True)[bles.count() // 2]
        kinds = {
            "first_page": {},
            "filtered": {"state": DeviceState.PROVISIONED.value, "type": ble.pk},
            "search": {"q": needle[:-1]},  # BLE-0050123 → "BLE-005012": about six devices
            "deep_page": {"page": max(1, math.ceil(devices.count() / 25) - 1)},
        }
        return kinds, needle

    def _get(self, client, url, params):
        response = client.get(url, params)
        if response.status_code != 200:
            raise CommandError(
                f"GET {url}?{urlencode(params)} answered {response.status_code}, not 200."
            )
        return response

    def _time(self, client, url, params, requests):
        for _ in range(WARM_UP):
            self._get(client, url, params)
        timings = []
        for _ in range(requests):
            started = time.perf_counter()
            self._get(client, url, params)
            timings.append((time.perf_counter() - started) * 1000)
        return timings

    def _count_queries(self, client, url, params):
        with CaptureQueriesContext(connection) as captured:
            self._get(client, url, params)
        return len(captured)
