"""``manage.py run_reconciler``: keeps every operation moving towards an end.

Every couple of seconds: re-sends operations whose answer is overdue, fails those past
their retry budget or deadline, and enqueues a dispatch job for each online gateway
with operations due — which is also how work lost with Redis comes back.

Safe to run more than once (two machines, an overlapping restart): the copies elect a
leader (``portal.leadership``) and only the leader passes; the others stand by and
take over within one period when it stops or dies. Periodic work of any other kind
belongs in this loop too, so that it inherits the same election.

Standard output: one JSON line per pass that did something, and one
``{"leader": true|false, "pid": …}`` line whenever this copy becomes leader or standby.
"""

import json
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from devices import operations
from portal.leadership import Leader


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
        with Leader("reconciler") as leader:
            leading = None
            while True:
                close_old_connections()
                if leader.acquire() != leading:
                    leading = leader.leading
                    self.say({"leader": leading, "pid": os.getpid()})
                if leading:
                    self.reconcile(options["once"])
                if options["once"] or stop.wait(options["every"]):
                    break

    def reconcile(self, once: bool) -> None:
        try:
            result, changes = operations.reconcile()
            operations.push(changes)
            gateways = result.gateways
            enqueued = operations.enqueue_dispatch(gateways, recheck=True) if gateways else 0
        except Exception as exc:  # a database or Redis blip: say so, try again
            self.stderr.write(f"reconcile failed: {exc}")
            return
        if result or once:
            self.say({**result.__dict__, "jobs": enqueued})

    def say(self, line: dict) -> None:
        """One JSON line, flushed: journald and tests read it as it happens."""
        self.stdout.write(json.dumps(line, default=str))
        self.stdout.flush()
