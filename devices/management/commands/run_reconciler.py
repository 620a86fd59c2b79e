"""``manage.py run_reconciler``: keeps every operation moving towards an end.

Every couple of seconds: re-sends operations whose answer is overdue, fails those past
their retry budget or deadline, and enqueues a dispatch job for each online gateway
with operations due — which is also how work lost with Redis comes back.
"""

import json
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from devices import operations


class Command(BaseCommand):
    help = "Re-dispatch overdue operations and fail those past their retry budget."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")
        parser.add_argument(
            "--every", type=float, default=settings.OPERATIONS["RECONCILE_EVERY_S"], help="seconds"
        )

    def handle(self, *args, **options):
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while True:
            close_old_connections()
            try:
                result, changes = operations.reconcile()
                operations.push(changes)
                gateways = result.gateways
                enqueued = operations.enqueue_dispatch(gateways, recheck=True) if gateways else 0
            except Exception as exc:  # a database or Redis blip: say so, try again
                self.stderr.write(f"reconcile failed: {exc}")
                result, enqueued = None, 0
            if result and (result or options["once"]):
                line = {**result.__dict__, "jobs": enqueued}
                self.stdout.write(json.dumps(line, default=str))
            if options["once"] or stop.wait(options["every"]):
                break
