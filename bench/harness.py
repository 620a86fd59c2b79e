"""What the end-to-end benchmarks share: scratch database, child processes, MQTT floors.

``bench_events`` and ``bench_provision`` run the portal as a deployment does — daphne,
bridge, RQ workers, reconciler and ``python -m gateway simulate`` as subprocesses on
the same database (by URL) — and measure from outside. Each benchmark prints one JSON
line; progress goes to stderr.
"""

import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from bench.mqtt_floors import clean_client
from devices.bridge import STATS_KEY
from devices.models import Gateway
from devices.mqtt import broker_address
from portal.models import Membership, Organization
from portal.tenancy import SESSION_KEY

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


def percentile(samples, pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)]


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
    raise CommandError(f"Cannot share a {connection.vendor} database with child processes.")


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


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB, while it is alive (Linux ``/proc``)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


class Harness:
    """A benchmark's child processes, its scratch database and its organization.

    Children run in their own process groups with their output in ``<work>/log``; the
    harness is a context manager that stops them all (and the bridge's persistent
    broker session) however the benchmark ends.
    """

    def __init__(self, name: str, stderr, broker: str | None = None):
        self.name, self.stderr = name, stderr
        self.broker = broker or settings.MQTT_URL
        self.work = Path(settings.VAR_DIR) / name
        (self.work / "log").mkdir(parents=True, exist_ok=True)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.bridge_ids: list[str] = []
        self.env = None

    @staticmethod
    def add_arguments(parser, *, gateways: int, workers: int | None = None) -> None:
        """The options every end-to-end benchmark takes: how many simulated gateways (and
        RQ workers, when it runs any), the broker and the scratch database."""
        parser.add_argument("--gateways", type=int, default=gateways)
        if workers is not None:
            parser.add_argument("--workers", type=int, default=workers, help="RQ worker processes")
            parser.add_argument("--timeout", type=float, default=600.0, help="give up after")
        parser.add_argument("--broker", default=None, help="MQTT URL (default: MQTT_URL)")
        parser.add_argument(
            "--database-file",
            default=str(settings.VAR_DIR / "bench.sqlite3"),
            help="Scratch SQLite file used when DATABASE_URL is unset.",
        )

    def __enter__(self):
        self.env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
        return self

    def __exit__(self, *exc):
        for name, process in reversed(self.children):
            self.kill(name, process)
        for client_id in self.bridge_ids:
            self._forget_session(client_id)

    def note(self, text: str) -> None:
        self.stderr.write(text)
        self.stderr.flush()

    # -- data -------------------------------------------------------------------------

    def use_scratch_database(self, path: Path) -> None:
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

    def organization(self, slug: str, name: str, gateways: int):
        """The organization and its gateways; their secrets written for the simulator."""
        organization, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        mapping = {}
        for n in range(1, gateways + 1):
            uid = f"{slug}-gw-{n:03d}"
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
        return organization

    def member(self, organization, username: str, roles=()):
        """A user of the organization who never logs in with a password."""
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@{organization.slug}.example"}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        membership, _ = Membership.objects.get_or_create(user=user, organization=organization)
        if roles and membership.roles != frozenset(str(r) for r in roles):
            membership.set_roles(roles)
            membership.save()
        return user

    @staticmethod
    def session_cookie(user, organization) -> str:
        client = Client()
        client.force_login(user)
        session = client.session
        session[SESSION_KEY] = organization.pk
        session.save()
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    def reset(self, organization, seats: int, *first) -> None:
        """Start from nothing: the organization's devices, operations and events deleted
        (``first``: querysets of rows that point at them), the simulated gateways back at
        factory state, and at least ``seats`` free license seats."""
        from devices.demo import SeedResult, ensure_demo_license
        from devices.models import BulkOperation, Device, DeviceEvent, Operation
        from licensing import capacity

        for queryset in first:
            queryset.delete()
        Operation.objects.filter(bulk__organization=organization).delete()
        BulkOperation.objects.filter(organization=organization).delete()
        DeviceEvent.objects.filter(organization=organization).delete()
        deleted, _ = Device.objects.filter(organization=organization).delete()
        shutil.rmtree(self.work / "gateway-sim", ignore_errors=True)
        licensed = ensure_demo_license(organization, seats, SeedResult(), seats=seats)
        if licensed is None and (capacity.usage(organization).free or 0) < seats:
            raise CommandError(
                f"{organization.slug} has fewer than {seats:,} free seats and this portal "
                "does not trust the demo license key: upload a license for it."
            )
        self.note(
            f"Organization {organization.slug!r} reset ({connection.vendor}): "
            f"{deleted:,} devices deleted"
        )

    def count_up(self, count, target: int, what: str, timeout: float, alive=()) -> int:
        """Poll ``count()`` until it reaches ``target``, a progress line each second."""
        shown, deadline = 0.0, time.monotonic() + timeout
        value = count()
        while value < target:
            if time.monotonic() > deadline:
                raise CommandError(f"Timed out: {value:,} of {target:,} {what}.")
            for name, process in alive:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited with {process.returncode}.")
            if time.monotonic() - shown >= 1:
                self.note(f"  {value:,} / {target:,} {what}")
                shown = time.monotonic()
            time.sleep(0.05)
            value = count()
        self.note(f"  {value:,} / {target:,} {what}")
        return value

    # -- child processes --------------------------------------------------------------

    def pids(self) -> list[int]:
        return [os.getpid(), *(process.pid for _, process in self.children)]

    def spawn(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.work / "log" / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        with log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**self.env, **kwargs.pop("env", {})},
                stdout=kwargs.pop("stdout", log),
                stderr=log,
                start_new_session=True,  # its own process group: killed whole
                **kwargs,
            )
        self.children.append((name, process))
        return process

    def start_daphne(self) -> int:
        port = free_port()
        daphne = self.spawn(
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

    def start_bridge(self) -> subprocess.Popen:
        # Unique per run: a stale stats key of an earlier bridge must not look like this
        # one having connected.
        client_id = f"fleetgate-{self.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.bridge_ids.append(client_id)
        bridge = self.spawn(
            "bridge",
            [sys.executable, "manage.py", "run_bridge", "--client-id", client_id],
            stdout=subprocess.PIPE,
        )
        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        key = STATS_KEY.format(client_id)

        def connected():
            raw = conn.get(key)
            return raw is not None and json.loads(raw).get("connects", 0) >= 1

        wait_until(connected, 30, "waiting for the bridge", alive=[("bridge", bridge)])
        self.note(f"bridge (pid {bridge.pid}) connected as {client_id}")
        return bridge

    def start_simulator(self, gateways: int, devices: int, *options: str) -> subprocess.Popen:
        """``python -m gateway simulate`` for the organization's gateways, once all are up."""
        ready_file = self.work / "log" / "simulator.out"
        with open(ready_file, "wb") as out:
            simulator = self.spawn(
                "simulator",
                [sys.executable, "-m", "gateway", "--log-level", "WARNING", "simulate",
                 "--secrets", str(self.secrets_file), "--gateways", str(gateways),
                 "--devices", str(devices), "--broker", self.broker,
                 "--state-dir", str(self.work / "gateway-sim"), *options],
                stdout=out,
            )  # fmt: skip

        def ready():
            return b'"simulate": "ready"' in ready_file.read_bytes()

        wait_until(ready, 60, "waiting for the gateways", alive=[("simulator", simulator)])
        line = json.loads(ready_file.read_bytes().splitlines()[0])
        if line["connected"] != gateways:
            raise CommandError(f"Only {line['connected']} of {gateways} gateways connected.")
        self.note(f"{line['gateways']} gateways connected in {line['seconds']} s")
        return simulator

    def stop(self, process: subprocess.Popen, name: str) -> dict | None:
        """SIGTERM, then the last JSON line the child printed (its own summary)."""
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.note(f"{name} did not stop within 20 s; killing it")
            self.kill(name, process)
            return None
        if out is None:  # written to a file
            out = (self.work / "log" / f"{name}.out").read_bytes()
        for line in reversed(out.decode(errors="replace").splitlines()):
            with contextlib.suppress(ValueError):
                return json.loads(line)
        return None

    def kill(self, name: str, process: subprocess.Popen) -> None:
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

    def _forget_session(self, client_id: str) -> None:
        """The bridge's session is persistent; a clean connect with its id removes it from the
        broker, which would otherwise queue every gateway's messages for it forever."""
        host, port, _, _ = broker_address(self.broker)
        c = clean_client(self.broker, client_id)
        with contextlib.suppress(OSError):
            c.connect(host, port)
            c.loop(timeout=1)
            c.disconnect()
