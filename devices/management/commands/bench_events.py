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
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from devices.bridge import STATS_KEY
from devices.management.commands.bench_widgets import percentile
from devices.models import DeviceEvent, Gateway
from devices.mqtt import broker_address, set_nodelay
from portal.models import Membership, Organization
from portal.tenancy import SESSION_KEY

ORG_SLUG = "bench-events"
ROOT = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, *, interval: float = 0.05, alive=()):
    """Poll until ``predicate()``; fail early if a child in ``alive`` has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for name, process in alive:
            if process.poll() is not None:
                raise CommandError(f"{name} exited with {process.returncode} while {what}.")
        time.sleep(interval)
    raise CommandError(f"Timed out after {timeout:.0f} s {what}.")


def database_url() -> str:
    """The URL of the database this process uses, so the children write to the same one."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(s["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise CommandError("An in-memory SQLite database cannot be shared with the bridge.")
        return f"sqlite:///{Path(name).absolute()}"
    if connection.vendor == "postgresql":
        auth = quote(s.get("USER") or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s.get("HOST") or "127.0.0.1"
        port = f":{s['PORT']}" if s.get("PORT") else ""
        return f"postgres://{auth}@{host}{port}/{quote(str(s['NAME']), safe='')}"
    raise CommandError(f"bench_events does not know how to share a {connection.vendor} database.")


def mqtt_floor(url: str, seconds: float, payload_bytes: int = 512, inflight: int = 100) -> float:
    """Messages/s from one paho publisher to one paho subscriber, QoS 1 both legs."""
    host, port, user, password = broker_address(url)
    tag = uuid.uuid4().hex[:12]
    topic = f"fleetgate-bench/floor/{tag}"
    received = [0]
    subscribed, connected = threading.Event(), threading.Event()

    def client(role):
        c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"fleetgate-bench-floor-{role}-{tag}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if user:
            c.username_pw_set(user, password)
        c.max_inflight_messages_set(inflight)
        return c

    sub, pub = client("sub"), client("pub")

    def sub_connected(c, userdata, flags, reason_code, properties):
        set_nodelay(c)
        c.subscribe(topic, qos=1)

    def on_message(c, userdata, message):
        received[0] += 1

    sub.on_connect = sub_connected
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = on_message
    slots = threading.BoundedSemaphore(inflight)
    pub.on_connect = lambda c, *a: (set_nodelay(c), connected.set())
    pub.on_publish = lambda *a: slots.release()
    try:
        for c in (sub, pub):
            c.connect(host, port)
            c.loop_start()
        if not (subscribed.wait(10) and connected.wait(10)):
            raise CommandError(f"The broker at {url} did not answer the floor measurement.")
        payload = b"x" * payload_bytes
        start = time.monotonic()
        warm_until, end = start + 0.5, start + 0.5 + seconds
        counted_from = None
        while (now := time.monotonic()) < end:
            if counted_from is None and now >= warm_until:
                counted_from = (now, received[0])
            if slots.acquire(timeout=1):
                pub.publish(topic, payload, qos=1)
        t0, n0 = counted_from
        return (received[0] - n0) / (time.monotonic() - t0)
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


class CpuMeter:
    """CPU used over the window by the whole machine and by this run's own processes.

    Other work on the machine (a test suite, another benchmark) moves the latency tail;
    the JSON line says how busy the machine was, so a reader can tell. Linux ``/proc``.
    """

    def __init__(self, pids):
        self.pids = pids

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # busy, all (idle+iowait out)

    def _ours(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def __enter__(self):
        try:
            self.start = (*self._machine(), self._ours())
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        self.result = {}
        if self.start is None:
            return
        busy, every, ours = (*self._machine(), self._ours())
        cpus = os.cpu_count() or 1
        span = (every - self.start[1]) / cpus  # ticks of wall time
        machine = (busy - self.start[0]) / span * 100
        mine = (ours - self.start[2]) / span * 100
        self.result = {
            "cpu_count": cpus,
            "cpu_machine_pct": round(machine),
            "cpu_bench_pct": round(mine),
            "cpu_others_pct": round(max(0.0, machine - mine)),
        }


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
        parser.add_argument("--gateways", type=int, default=50)
        parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
        parser.add_argument("--events-per-s-per-gateway", type=float, default=110.0)
        parser.add_argument("--browsers", type=int, default=5)
        parser.add_argument("--devices-per-gateway", type=int, default=20)
        parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
        parser.add_argument("--floor-seconds", type=float, default=2.0)
        parser.add_argument("--broker", default=None, help="MQTT URL (default: MQTT_URL)")
        parser.add_argument(
            "--database-file",
            default=str(settings.VAR_DIR / "bench.sqlite3"),
            help="Scratch SQLite file used when DATABASE_URL is unset.",
        )

    def handle(self, *args, **o):
        if o["gateways"] < 1 or o["browsers"] < 1 or o["seconds"] <= 0:
            raise CommandError("--gateways, --browsers and --seconds must be positive.")
        self.stderr.style_func = None  # progress, not errors
        self.broker = o["broker"] or settings.MQTT_URL
        self.work = Path(settings.VAR_DIR) / "bench-events"
        (self.work / "log").mkdir(parents=True, exist_ok=True)
        self._use_scratch_database(Path(o["database_file"]))
        call_command("migrate", interactive=False, verbosity=0)
        organization, cookie = self._inventory(o["gateways"])
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
        self.bridge_id = f"fleetgate-bench-events-{os.getpid()}"
        browsers = None
        try:
            self.note(f"Measuring the MQTT floor on {self.broker} for {o['floor_seconds']} s")
            floor = mqtt_floor(self.broker, o["floor_seconds"])
            port = self._start_daphne()
            bridge = self._start_bridge()
            url = f"ws://127.0.0.1:{port}/ws/live/"
            browsers = Browsers(url, f"http://127.0.0.1:{port}", cookie, o["browsers"])
            browsers.start()
            self.note(f"{o['browsers']} browsers attached to {url}")
            simulator = self._start_simulator(o)
            self.note(f"Warming up for {o['warmup']} s")
            time.sleep(o["warmup"])
            self.note(f"Measuring for {o['seconds']} s")
            with CpuMeter(self._pids) as cpu:
                t0 = time.time()
                time.sleep(o["seconds"])
                t1 = time.time()
            time.sleep(0.5)  # what was in flight at t1 arrives; only [t0, t1) is counted
            result = self._result(organization, browsers, t0, t1, floor, o) | cpu.result
            result["simulator"] = self._stop(simulator, "simulator")
            result["bridge"] = self._stop(bridge, "bridge")
        finally:
            if browsers:
                browsers.stop()
            for name, process in reversed(self.children):
                self._kill(name, process)
            self._forget_bridge_session()
        rejected = {
            k.removeprefix("rejected."): v
            for k, v in (result["bridge"] or {}).items()
            if k.startswith("rejected.")
        }
        result["bridge_rejected"] = rejected
        self.stdout.write(json.dumps(result))

    # -- set-up ---------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.stderr.write(text)
        self.stderr.flush()

    def _use_scratch_database(self, path: Path):
        """Never the demo database: without DATABASE_URL, point 'default' at a scratch file."""
        demo_file = Path(settings.VAR_DIR) / "fleetgate.sqlite3"
        if (
            connection.vendor != "sqlite"
            or Path(str(connection.settings_dict["NAME"])) != demo_file
        ):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        connection.close()
        connection.settings_dict["NAME"] = path
        self.note(f"DATABASE_URL is unset: using the scratch database {path}")

    def _inventory(self, gateways: int):
        """Organization, gateways with secrets (written for the simulator), a member's cookie."""
        organization, _ = Organization.objects.get_or_create(
            slug=ORG_SLUG, defaults={"name": "Bench Events"}
        )
        uids = [f"{ORG_SLUG}-gw-{n:03d}" for n in range(1, gateways + 1)]
        mapping = {}
        for uid in uids:
            gateway, _ = Gateway.objects.get_or_create(
                uid=uid,
                defaults={
                    "organization": organization,
                    "name": uid,
                    "secret": secrets.token_urlsafe(32),
                    "secret_rotated_at": timezone.now(),
                },
            )
            if gateway.organization_id != organization.pk:
                raise CommandError(f"Gateway {uid} belongs to another organization.")
            mapping[uid] = gateway.secret
        self.secrets_file = self.work / "secrets.json"
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(mapping, fh)
        deleted, _ = DeviceEvent.objects.filter(organization=organization).delete()
        self.note(
            f"Organization {ORG_SLUG!r}: {gateways} gateways; "
            f"{deleted:,} events of earlier runs deleted ({connection.vendor})"
        )
        user, created = get_user_model().objects.get_or_create(
            username="bench-events", defaults={"email": "bench-events@bench-events.example"}
        )
        if created:
            user.set_unusable_password()  # a browser session, never a login
            user.save(update_fields=["password"])
        Membership.objects.get_or_create(user=user, organization=organization)
        client = Client()
        client.force_login(user)
        session = client.session
        session[SESSION_KEY] = organization.pk
        session.save()
        return organization, client.cookies[settings.SESSION_COOKIE_NAME].value

    # -- child processes ------------------------------------------------------------------

    def _pids(self) -> list[int]:
        return [os.getpid(), *(process.pid for _, process in self.children)]

    def _spawn(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.work / "log" / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        with log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=kwargs.pop("stdout", log),
                stderr=log,
                start_new_session=True,  # its own process group: killed whole
                **kwargs,
            )
        self.children.append((name, process))
        return process

    def _start_daphne(self) -> int:
        port = free_port()
        daphne = self._spawn(
            "daphne",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "portal.asgi:application"],
        )  # fmt: skip

        def listening():
            with socket.socket() as sock:
                sock.settimeout(0.2)
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 30, "waiting for daphne", alive=[("daphne", daphne)])
        self.note(f"daphne (pid {daphne.pid}) listens on 127.0.0.1:{port}")
        return port

    def _start_bridge(self) -> subprocess.Popen:
        bridge = self._spawn(
            "bridge",
            [sys.executable, "manage.py", "run_bridge", "--client-id", self.bridge_id],
            stdout=subprocess.PIPE,
        )
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        key = STATS_KEY.format(self.bridge_id)

        def connected():
            raw = conn.get(key)
            return raw is not None and json.loads(raw).get("connects", 0) >= 1

        wait_until(connected, 30, "waiting for the bridge", alive=[("bridge", bridge)])
        self.note(f"bridge (pid {bridge.pid}) connected as {self.bridge_id}")
        return bridge

    def _start_simulator(self, o) -> subprocess.Popen:
        ready_file = self.work / "log" / "simulator.out"
        with open(ready_file, "wb") as out:
            simulator = self._spawn(
                "simulator",
                [sys.executable, "-m", "gateway", "--log-level", "WARNING", "simulate",
                 "--secrets", str(self.secrets_file), "--gateways", str(o["gateways"]),
                 "--devices", str(o["devices_per_gateway"]),
                 "--events-per-s", str(o["events_per_s_per_gateway"]),
                 "--latency-ms", "0", "--broker", self.broker,
                 "--state-dir", str(self.work / "gateway-sim")],
                stdout=out,
            )  # fmt: skip

        def ready():
            return b'"simulate": "ready"' in ready_file.read_bytes()

        wait_until(ready, 60, "waiting for the gateways", alive=[("simulator", simulator)])
        line = json.loads(ready_file.read_bytes().splitlines()[0])
        if line["connected"] != o["gateways"]:
            raise CommandError(f"Only {line['connected']} of {o['gateways']} gateways connected.")
        offered = o["gateways"] * o["events_per_s_per_gateway"]
        self.note(
            f"{line['gateways']} gateways connected in {line['seconds']} s, "
            f"{offered:,.0f} events/s offered"
        )
        return simulator

    def _stop(self, process: subprocess.Popen, name: str) -> dict | None:
        """SIGTERM, then the last JSON line the child printed (its own summary)."""
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.note(f"{name} did not stop within 20 s; killing it")
            self._kill(name, process)
            return None
        if out is None:  # written to a file
            out = (self.work / "log" / f"{name}.out").read_bytes()
        for line in reversed(out.decode(errors="replace").splitlines()):
            with contextlib.suppress(ValueError):
                return json.loads(line)
        return None

    def _kill(self, name: str, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process.stdout:
            process.stdout.close()

    def _forget_bridge_session(self) -> None:
        """The bridge's session is persistent; a clean connect with its id removes it from the
        broker, which would otherwise queue every gateway's messages for it forever."""
        host, port, user, password = broker_address(self.broker)
        c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.bridge_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if user:
            c.username_pw_set(user, password)
        with contextlib.suppress(OSError):
            c.connect(host, port)
            c.loop(timeout=1)
            c.disconnect()

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
