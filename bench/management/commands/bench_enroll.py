"""Benchmark batch enrollment; print one JSON line.

* ``import_s``: parse, check and commit a list of ``--rows`` simulated devices (serial,
  the right access key, type, gateway) — ``enrollment.batch`` as the batch page and
  ``enroll_import`` run it: one transaction, every row a record.
* ``enroll_devices_per_s``: the records sent (``enrollment.batch.send``, as the batch
  page's commit does), from the send to the last record done, through real RQ workers,
  the bridge, the reconciler, Mosquitto and ``python -m gateway simulate`` (zero link
  latency), whose devices check the access key.

Which database: the one the command runs on, never the demo's (a scratch SQLite file
when ``DATABASE_URL`` is unset). The organization ``bench-enroll`` is reset each run:
its records, devices, operations and events are deleted and the simulated gateways
start from factory state.
"""

import json
import sys
import time
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count, Max

from bench.harness import CpuMeter, Harness
from devices.choices import DeviceState, Protocol
from devices.models import Device, DeviceType
from enrollment import batch
from enrollment.choices import OPEN_STATUSES, EnrollmentStatus
from enrollment.models import EnrollmentBatch, EnrollmentRecord
from gateway.drivers.simulated import access_key, serial_number
from licensing import capacity
from portal import exports
from portal.choices import Role

ORG_SLUG = "bench-enroll"
DEVICE_TYPE = "Simulated sensor"  # what the simulated gateways report


class Command(BaseCommand):
    help = (
        "Import a list of simulated devices (parse, check, commit) and enroll them through "
        "real workers, bridge and simulated gateways; one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=10_000)
        Harness.add_arguments(parser, gateways=20, workers=2)

    def handle(self, *args, **o):
        if o["gateways"] < 1 or o["rows"] < o["gateways"] or o["workers"] < 1:
            raise CommandError("Need --gateways ≥ 1, --rows ≥ --gateways, --workers ≥ 1.")
        if o["rows"] > batch.MAX_ROWS:
            raise CommandError(f"At most {batch.MAX_ROWS:,} rows: one list's limit.")
        per_gateway = o["rows"] // o["gateways"]
        total = per_gateway * o["gateways"]
        self.stderr.style_func = None  # progress, not errors
        harness = Harness("bench-enroll", self.stderr, o["broker"])
        harness.use_scratch_database(Path(o["database_file"]))
        call_command("migrate", interactive=False, verbosity=0)
        organization = harness.organization(ORG_SLUG, "Bench Enroll", o["gateways"])
        harness.reset(
            organization,
            total,
            EnrollmentRecord.objects.filter(organization=organization),
            EnrollmentBatch.objects.filter(organization=organization),
        )
        user = harness.member(organization, ORG_SLUG, roles=[Role.ADMINISTRATOR])
        DeviceType.objects.get_or_create(name=DEVICE_TYPE, defaults={"protocol": Protocol.BLE})
        uids = [f"{ORG_SLUG}-gw-{n:03d}" for n in range(1, o["gateways"] + 1)]
        data = self._list(uids, per_gateway)
        harness.note(f"Importing {total:,} rows ({len(data) / 1024:,.0f} KiB)")

        started = time.perf_counter()
        parsed = batch.parse(data)
        parse_s = time.perf_counter() - started
        committed = batch.commit(organization, user, parsed, source="bench_enroll.csv")
        import_s = time.perf_counter() - started
        refused = committed.checked.invalid
        if refused:
            raise CommandError(f"{len(refused):,} rows refused, e.g. {refused[0].reason}")
        harness.note(f"  {len(committed.records):,} records in {import_s:.2f} s")

        with harness:
            bridge = harness.start_bridge()
            for n in range(1, o["workers"] + 1):
                harness.spawn(
                    f"worker-{n}",
                    [sys.executable, "manage.py", "rqworker", "default",
                     "--worker-class", "rq.SimpleWorker"],
                )  # fmt: skip
            harness.spawn("reconciler", [sys.executable, "manage.py", "run_reconciler"])
            simulator = harness.start_simulator(o["gateways"], per_gateway, "--latency-ms", "0")
            alive = [("bridge", bridge), ("simulator", simulator)]
            devices = Device.objects.for_organization(organization)
            harness.count_up(devices.count, total, "devices discovered", o["timeout"], alive)

            records = EnrollmentRecord.objects.filter(batch=committed.batch)
            finished = records.exclude(status__in=OPEN_STATUSES)
            harness.note(f"Enrolling {total:,} devices through {o['gateways']} gateways")
            with CpuMeter(harness.pids) as cpu:
                sent_at = time.time()
                t0 = time.perf_counter()
                sent = batch.send(organization, user, committed.records)
                send_ms = (time.perf_counter() - t0) * 1000
                harness.note(f"  {sent} ({send_ms:,.0f} ms)")
                harness.count_up(finished.count, total, "records finished", o["timeout"], alive)
                last = records.aggregate(last=Max("finished_at"))["last"]
            seconds = (last.timestamp() if last else time.time()) - sent_at
            statuses = dict(records.values_list("status").annotate(n=Count("pk")).order_by())
            done = statuses.get(EnrollmentStatus.DONE, 0)
            result = {
                "rows": total,
                "import_s": round(import_s, 3),
                "parse_s": round(parse_s, 3),
                "enroll_devices_per_s": round(done / seconds) if seconds > 0 else None,
                "enroll_s": round(seconds, 2),
                "send_ms": round(send_ms),
                "done": done,
                "failed": statuses.get(EnrollmentStatus.FAILED, 0),
                "provisioned": devices.filter(state=DeviceState.PROVISIONED).count(),
                "licensed_used": capacity.usage(organization).used,
                "gateways": o["gateways"],
                "workers": o["workers"],
                "database": connection.vendor,
            } | cpu.result
            harness.stop(simulator, "simulator")
        self.stdout.write(json.dumps(result))

    @staticmethod
    def _list(uids, per_gateway: int) -> bytes:
        """The list an installer would upload: every simulated device with its label's key."""
        rows = (
            (serial, access_key(serial), DEVICE_TYPE, uid)
            for uid in uids
            for serial in (serial_number(uid, n) for n in range(1, per_gateway + 1))
        )
        return exports.text(["serial", "key", "type", "gateway"], rows).encode()
