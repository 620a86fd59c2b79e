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
import time

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
        # A signal handler runs on the main thread between two of its steps, so it must
        # not take a lock: ``threading.Event.set`` does, and a second signal arriving
        # during the first one's ``set`` (Ctrl-C, then the demo's SIGTERM) waited for
        # that lock forever. Appending to a list takes none.
        stop: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.append(signum))
        with Leader("reconciler") as leader:
            leading = None
            while True:
                close_old_connections()
                if leader.acquire() != leading:
                    leading = leader.leading
                    self.say({"leader": leading, "pid": os.getpid()})
                if leading:
                    self.reconcile(options["once"])
                if options["once"] or self._sleep(options["every"], stop):
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

    @staticmethod
    def _sleep(seconds: float, stop: list) -> bool:
        """Sleep up to ``seconds``, waking within 0.1 s of a stop request; True if asked."""
        deadline = time.monotonic() + seconds
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return bool(stop)
