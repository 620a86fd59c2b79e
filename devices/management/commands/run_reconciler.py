"""``manage.py run_reconciler``: keeps every operation moving towards an end.

Every couple of seconds: re-sends operations whose answer is overdue, fails those past
their retry budget or deadline, and enqueues a dispatch job for each online gateway
with operations due — which is also how work lost with Redis comes back.
"""

import json
import signal
import time

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
        # A signal handler runs on the main thread between two of its steps, so it must
        # not take a lock: ``threading.Event.set`` does, and a second signal arriving
        # during the first one's ``set`` (Ctrl-C, then the demo's SIGTERM) waited for
        # that lock forever. Appending to a list takes none.
        stop: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
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
            if options["once"] or self._sleep(options["every"], stop):
                break

    @staticmethod
    def _sleep(seconds: float, stop: list) -> bool:
        """Sleep up to ``seconds``, waking within 0.1 s of a stop request; True if asked."""
        deadline = time.monotonic() + seconds
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return bool(stop)
