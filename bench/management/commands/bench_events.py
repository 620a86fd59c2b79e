"""Benchmark event ingestion end to end; print one JSON line.

Simulated gateways (``python -m gateway simulate``, one subprocess) flood telemetry
through the broker into ONE bridge process (``manage.py run_bridge``), which persists it
and fans it out through the channel layer to ``--browsers`` real WebSocket clients
attached to a real ASGI server (daphne, a subprocess) with a real session cookie. So
every part the browsers depend on in production is in the measured path.

* ``events_per_s``: events counted in the "events" messages the slowest browser
  received during the measuring window, divided by its length; cross-checked against
  the DeviceEvent rows persisted in the same window (``persisted_per_s``).
* latency: WebSocket receive time minus the gateway's timestamp (``ts``) of each event
  in the messages' ``sample`` (the newest events of each bridge batch, so it leans
  optimistic by up to one batch); ``persist_p50_ms``/``persist_p99_ms`` cover EVERY event
  persisted in the window: gateway timestamp → the bridge batch that wrote it
  (``received_at``), i.e. without that batch's own write and fan-out time.
* ``cpu_*_pct``: how busy the machine was during the window, and how much of that was
  this run's own processes (100 = one core); other work on the machine moves the tail.
* ``mqtt_floor_msgs_per_s``: raw paho publish → receive on the same broker, QoS 1,
  TCP_NODELAY, 100 in flight, measured in the same run before the load starts: the
  ceiling one MQTT client pair reaches with no work behind it.

Which database: the one the command runs on — but never the demo database (as
``bench_widgets``: without ``DATABASE_URL`` a scratch SQLite file is used). The child
processes get that same database by URL. Data lives in the organization ``bench-events``
(gateways, an ordinary member for the browsers' session; devices appear through the
gateways' discovery); its old events are deleted first so runs compare.
"""

import asyncio
import contextlib
import json
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench.harness import CpuMeter, Harness, percentile
from bench.mqtt_floors import mqtt_floor
from devices.models import DeviceEvent

ORG_SLUG = "bench-events"


class Browsers:
    """``n`` WebSocket clients on the dashboard's live socket, each on its own connection.

    Runs its own event loop in a thread; records, per browser, every "events" message
    with the time it arrived (wall clock, as the gateways' ``ts``).
    """

    def __init__(self, url: str, origin: str, cookie: str, n: int):
        self.url, self.origin, self.cookie, self.n = url, origin, cookie, n
        self.received: list[list[tuple[float, dict]]] = [[] for _ in range(n)]
        self.hellos = [threading.Event() for _ in range(n)]
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._tasks = []

    def start(self, timeout: float = 20) -> None:
        self._thread.start()
        for i in range(self.n):
            future = asyncio.run_coroutine_threadsafe(self._browse(i), self.loop)
            self._tasks.append(future)
        for i, hello in enumerate(self.hellos):
            if not hello.wait(timeout):
                raise CommandError(
                    f"Browser {i} got no hello on {self.url}: {self.errors or 'no answer'}"
                )

    async def _browse(self, i: int) -> None:
        from websockets.asyncio.client import connect

        headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={self.cookie}"}
        log = self.received[i]
        try:
            async with connect(
                self.url, origin=self.origin, additional_headers=headers, compression=None
            ) as ws:
                async for raw in ws:
                    at = time.time() * 1000
                    message = json.loads(raw)
                    kind = message.get("kind")
                    if kind == "hello":
                        self.hellos[i].set()
                    elif kind == "events":
                        log.append((at, message))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported by start() or in the result
            self.errors.append(f"browser {i}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        for future in self._tasks:
            future.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0.1), self.loop).result(2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class Command(BaseCommand):
    help = (
        "Flood events from simulated gateways through MQTT into one bridge process with "
        "browsers' WebSockets attached; one JSON line (events/s, latency, MQTT floor)."
    )

    def add_arguments(self, parser):
        Harness.add_arguments(parser, gateways=50)
        parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
        parser.add_argument("--events-per-s-per-gateway", type=float, default=110.0)
        parser.add_argument("--browsers", type=int, default=5)
        parser.add_argument("--devices-per-gateway", type=int, default=20)
        parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
        parser.add_argument("--floor-seconds", type=float, default=2.0)

    def handle(self, *args, **o):
        if o["gateways"] < 1 or o["browsers"] < 1 or o["seconds"] <= 0:
            raise CommandError("--gateways, --browsers and --seconds must be positive.")
        self.stderr.style_func = None  # progress, not errors
        harness = Harness("bench-events", self.stderr, o["broker"])
        harness.use_scratch_database(Path(o["database_file"]))
        call_command("migrate", interactive=False, verbosity=0)
        organization = harness.organization(ORG_SLUG, "Bench Events", o["gateways"])
        deleted, _ = DeviceEvent.objects.filter(organization=organization).delete()
        harness.note(
            f"Organization {ORG_SLUG!r}: {o['gateways']} gateways; "
            f"{deleted:,} events of earlier runs deleted ({connection.vendor})"
        )
        cookie = harness.session_cookie(harness.member(organization, ORG_SLUG), organization)
        browsers = None
        with harness:
            try:
                harness.note(f"Measuring the MQTT floor on {harness.broker}")
                floor = mqtt_floor(harness.broker, o["floor_seconds"])
                port = harness.start_daphne()
                bridge = harness.start_bridge()
                url = f"ws://127.0.0.1:{port}/ws/live/"
                browsers = Browsers(url, f"http://127.0.0.1:{port}", cookie, o["browsers"])
                browsers.start()
                harness.note(f"{o['browsers']} browsers attached to {url}")
                simulator = harness.start_simulator(
                    o["gateways"],
                    o["devices_per_gateway"],
                    *("--events-per-s", str(o["events_per_s_per_gateway"]), "--latency-ms", "0"),
                )
                harness.note(f"Warming up for {o['warmup']} s")
                time.sleep(o["warmup"])
                harness.note(f"Measuring for {o['seconds']} s")
                with CpuMeter(harness.pids) as cpu:
                    t0 = time.time()
                    time.sleep(o["seconds"])
                    t1 = time.time()
                time.sleep(0.5)  # what was in flight at t1 arrives; only [t0, t1) is counted
                result = self._result(organization, browsers, t0, t1, floor, o) | cpu.result
                result["simulator"] = harness.stop(simulator, "simulator")
                result["bridge"] = harness.stop(bridge, "bridge")
            finally:
                if browsers:
                    browsers.stop()
        rejected = {
            k.removeprefix("rejected."): v
            for k, v in (result["bridge"] or {}).items()
            if k.startswith("rejected.")
        }
        result["bridge_rejected"] = rejected
        self.stdout.write(json.dumps(result))

    # -- the numbers ----------------------------------------------------------------------

    def _result(self, organization, browsers: Browsers, t0: float, t1: float, floor, o) -> dict:
        window = t1 - t0
        t0_ms, t1_ms = t0 * 1000, t1 * 1000
        counts, latencies, fanout = [], [], []
        for log in browsers.received:
            count = 0
            for at, message in log:
                if t0_ms <= at < t1_ms:
                    count += message["count"]
                    latencies += [at - item["ts"] for item in message["sample"]]
                    fanout.append(at - message["at"])
            counts.append(count)
        rows = DeviceEvent.objects.filter(
            organization=organization,
            received_at__gte=datetime.fromtimestamp(t0, UTC),
            received_at__lt=datetime.fromtimestamp(t1, UTC),
        )
        persisted = rows.count()
        persist_ms = [
            (received - occurred).total_seconds() * 1000
            for occurred, received in rows.values_list("occurred_at", "received_at").iterator()
        ]
        if not latencies:
            raise CommandError(f"The browsers saw no events. {browsers.errors}")

        def ms(value):
            return round(value, 1)

        return {
            "events_per_s": round(min(counts) / window),
            "p50_latency_ms": ms(statistics.median(latencies)),
            "p99_latency_ms": ms(percentile(latencies, 99)),
            "mqtt_floor_msgs_per_s": round(floor),
            "persisted_per_s": round(persisted / window),
            "events_persisted": persisted,
            "persist_p50_ms": ms(statistics.median(persist_ms)) if persist_ms else None,
            "persist_p99_ms": ms(percentile(persist_ms, 99)) if persist_ms else None,
            "fanout_p99_ms": ms(percentile(fanout, 99)),
            "events_offered_per_s": round(o["gateways"] * o["events_per_s_per_gateway"]),
            "browser_events": counts,
            "latency_samples": len(latencies),
            "browsers": o["browsers"],
            "browser_errors": browsers.errors,
            "gateways": o["gateways"],
            "seconds": round(window, 2),
            "database": connection.vendor,
        }
