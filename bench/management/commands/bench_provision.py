"""Benchmark provisioning end to end; print one JSON line.

From the HTTP request that provisions all devices of a group (the REST API's
``POST /api/v1/devices/actions/``, the same ``operations.start`` as the Groups widget's
"Provision All Devices") to the last device provisioned, through every real part:
daphne, the RQ workers (``rqworker``, as the demo runs them), the bridge, the
reconciler, Mosquitto, Redis and ``python -m gateway simulate`` with zero link latency.

* ``devices_per_s``: devices provisioned / (the bulk operation's ``finished_at`` − the
  moment the request was sent). ``request_ms`` is the request alone (plan, seat
  reservation and one transaction for every device).
* ``mqtt_floor_roundtrips_per_s``: raw paho command → reply round trips on the same
  broker, QoS 1, 100 in flight, measured in the same run before the load. One round
  trip carries one message each way; the portal batches up to 500 operations into one.
* ``worker_rss_mb``: the largest peak resident set (VmHWM) of the workers.
* Event ingestion: the simulated gateways send telemetry throughout; telemetry rows
  persisted per second are measured while idle and while provisioning runs
  (``events_drop_pct``: how much less was ingested during the run; negative = more).

Which database: the one the command runs on (PostgreSQL through ``DATABASE_URL`` is
the point), never the demo's. The organization ``bench-provision`` is reset each run:
its devices, operations and events are deleted and the simulated gateways start from
factory state, so they are discovered afresh and every run provisions the same number.
"""

import json
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bench.harness import CpuMeter, Harness, peak_rss_mb
from bench.mqtt_floors import mqtt_roundtrip_floor
from devices.choices import DeviceState
from devices.models import BulkOperation, Device, DeviceEvent, DeviceGroup, Operation
from gateway.protocol import EventKind
from licensing import capacity
from portal import tokens
from portal.choices import Role

ORG_SLUG = "bench-provision"


class Command(BaseCommand):
    help = (
        "Provision all devices of a group through real workers, bridge and simulated "
        "gateways; one JSON line (devices/s, MQTT round-trip floor, worker RSS, events)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10_000)
        parser.add_argument(
            "--events-per-s-per-gateway",
            type=float,
            default=20.0,
            help="telemetry sent throughout (0: none)",
        )
        parser.add_argument("--idle-seconds", type=float, default=5.0)
        parser.add_argument("--floor-seconds", type=float, default=2.0)
        Harness.add_arguments(parser, gateways=50, workers=2)

    def handle(self, *args, **o):
        if o["gateways"] < 1 or o["devices"] < o["gateways"] or o["workers"] < 1:
            raise CommandError("Need --gateways ≥ 1, --devices ≥ --gateways, --workers ≥ 1.")
        per_gateway = o["devices"] // o["gateways"]
        total = per_gateway * o["gateways"]
        self.stderr.style_func = None  # progress, not errors
        harness = Harness("bench-provision", self.stderr, o["broker"])
        harness.use_scratch_database(Path(o["database_file"]))
        if connection.vendor != "postgresql":
            harness.note("Note: the target is measured on PostgreSQL (set DATABASE_URL).")
        call_command("migrate", interactive=False, verbosity=0)
        organization = harness.organization(ORG_SLUG, "Bench Provision", o["gateways"])
        harness.reset(organization, total)
        user = harness.member(organization, ORG_SLUG, roles=[Role.ADMINISTRATOR])
        _, token = tokens.issue(user, name="bench_provision", days=1)
        group, _ = DeviceGroup.objects.get_or_create(organization=organization, name="Everything")

        with harness:
            harness.note(f"Measuring the MQTT round-trip floor on {harness.broker}")
            floor = mqtt_roundtrip_floor(harness.broker, o["floor_seconds"])
            port = harness.start_daphne()
            bridge = harness.start_bridge()
            workers = [
                harness.spawn(
                    f"worker-{n}",
                    [
                        sys.executable,
                        "manage.py",
                        "rqworker",
                        "default",
                        "--worker-class",
                        "rq.SimpleWorker",
                    ],
                )  # fmt: skip
                for n in range(1, o["workers"] + 1)
            ]
            harness.spawn("reconciler", [sys.executable, "manage.py", "run_reconciler"])
            events = ("--events-per-s", str(o["events_per_s_per_gateway"]))
            simulator = harness.start_simulator(
                o["gateways"], per_gateway, "--latency-ms", "0", *events
            )
            alive = [("bridge", bridge), ("simulator", simulator)]
            devices = Device.objects.for_organization(organization)
            discovered = harness.count_up(
                lambda: devices.count(), total, "devices discovered", o["timeout"], alive
            )
            group.devices.through.objects.bulk_create(
                [
                    group.devices.through(devicegroup_id=group.pk, device_id=pk)
                    for pk in devices.values_list("pk", flat=True)
                ],
                ignore_conflicts=True,
            )
            harness.note(f"Idle for {o['idle_seconds']} s: measuring event ingestion")
            idle_from = time.time()
            time.sleep(o["idle_seconds"])
            idle = self._telemetry(organization, idle_from, time.time())

            harness.note(f"Provisioning {total:,} devices (group “{group.name}”)")
            with CpuMeter(harness.pids) as cpu:
                started = time.time()
                bulk_id, request_ms = self._request(port, token, group.pk)
                bulk = BulkOperation.objects.filter(pk=bulk_id)
                harness.count_up(
                    lambda: sum(bulk.values_list("done", "failed", "cancelled").get()),
                    total,
                    "operations finished",
                    o["timeout"],
                    alive,
                )
                bulk = bulk.get()
                finished = (bulk.finished_at or timezone.now()).timestamp()
            during = self._telemetry(organization, started, finished)
            rss = [peak_rss_mb(w.pid) for w in workers]
            bridge_rss = peak_rss_mb(bridge.pid)
            provisioned = devices.filter(state=DeviceState.PROVISIONED).count()
            seconds = finished - started
            result = {
                "devices": total,
                "devices_per_s": round(bulk.done / seconds),
                "seconds": round(seconds, 2),
                "request_ms": round(request_ms),
                "done": bulk.done,
                "failed": bulk.failed,
                "provisioned": provisioned,
                "attempts": self._attempts(bulk),
                "mqtt_floor_roundtrips_per_s": round(floor),
                "worker_rss_mb": max(r for r in rss if r is not None),
                "workers": o["workers"],
                "bridge_rss_mb": bridge_rss,
                "licensed_used": capacity.usage(organization).used,
                "events_offered_per_s": round(o["gateways"] * o["events_per_s_per_gateway"]),
                "events_idle_per_s": idle["per_s"],
                "events_during_per_s": during["per_s"],
                "events_drop_pct": (
                    round((1 - during["per_s"] / idle["per_s"]) * 100, 1) if idle["per_s"] else None
                ),
                "events_idle_p99_ms": idle["p99_ms"],
                "events_during_p99_ms": during["p99_ms"],
                "discovered": discovered,
                "gateways": o["gateways"],
                "database": connection.vendor,
            } | cpu.result
            result["simulator"] = harness.stop(simulator, "simulator")
        self.stdout.write(json.dumps(result))

    def _request(self, port: int, token: str, group_id: int) -> tuple[int, float]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/devices/actions/",
            data=json.dumps({"action": "provision", "group": group_id}).encode(),
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": "application/json",
                "X-Organization": ORG_SLUG,
            },
            method="POST",
        )
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                body = json.loads(response.read())
                status = response.status
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500]
            raise CommandError(f"The request was refused ({exc.code}): {detail!r}") from None
        elapsed = (time.monotonic() - t0) * 1000
        if status != 202:
            raise CommandError(f"Expected 202 Accepted, got {status}: {body}")
        return body["id"], elapsed

    @staticmethod
    def _telemetry(organization, t0: float, t1: float) -> dict:
        rows = DeviceEvent.objects.filter(
            organization=organization,
            kind=EventKind.TELEMETRY.value,
            received_at__gte=datetime.fromtimestamp(t0, UTC),
            received_at__lt=datetime.fromtimestamp(t1, UTC),
        )
        lags = sorted(
            (received - occurred).total_seconds() * 1000
            for occurred, received in rows.values_list("occurred_at", "received_at").iterator()
        )
        p99 = round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 1) if lags else None
        return {"per_s": round(len(lags) / (t1 - t0)) if t1 > t0 else 0, "p99_ms": p99}

    @staticmethod
    def _attempts(bulk) -> dict:
        rows = Operation.objects.filter(bulk=bulk).values_list("attempts").annotate(n=Count("pk"))
        return {str(attempts): n for attempts, n in rows.order_by("attempts")}
