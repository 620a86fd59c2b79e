"""Check that the services the portal needs are answering, before starting it.

Prints one line per service: ``OK …`` on stdout, or ``MISSING …`` on stderr with the
command that starts it; exits 1 when any required service is missing. The database
check applies only when DATABASE_URL names PostgreSQL (SQLite needs no server).
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from portal import services


class Command(BaseCommand):
    help = "Check Redis, Mosquitto and (when configured) PostgreSQL; exit 1 when one is missing."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--require",
            default=",".join(services.CHECKS),
            help=f"Comma-separated services to check, of {', '.join(services.CHECKS)} (default: all).",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=services.TIMEOUT,
            help="Seconds to wait for each service.",
        )

    def handle(self, *args, require, timeout, **options):
        wanted = [name.strip() for name in require.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(services.CHECKS))
        if unknown or not wanted:
            raise CommandError(
                f"Unknown service(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(services.CHECKS)}.",
                returncode=2,
            )
        missing = 0
        for name in dict.fromkeys(wanted):
            status = services.CHECKS[name](timeout=timeout)
            if status is None:
                self.stdout.write("OK  Database is SQLite: no server to check")
            elif status.ok:
                self.stdout.write(str(status))
            else:
                missing += 1
                self.stderr.write(str(status))
        if missing:
            sys.exit(1)
