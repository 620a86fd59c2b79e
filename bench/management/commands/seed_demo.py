"""Seed the demo: two organizations, one user per role combination, ~200 devices.

Idempotent: a second run finds everything by its natural key and creates nothing.
It does reset the demo users' role groups and password to what the table it prints
says, so the printed logins are always true.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from bench import firmware_demo
from devices import demo
from portal.choices import Role

A, DM, IM = Role.ADMINISTRATOR, Role.DEVICE_MANAGER, Role.IOT_MANAGER
DEMO_USERS = (
    ("admin", (A,)),
    ("devmgr", (DM,)),
    ("iotmgr", (IM,)),
    ("enroller", (DM, IM)),
    ("viewer", ()),
)


class Command(BaseCommand):
    help = "Create the demo organizations, users, device types, gateways, devices and groups."

    def add_arguments(self, parser):
        parser.add_argument(
            "--password", default="fleetgate-demo", help="Password of every demo login."
        )
        parser.add_argument(
            "--devices",
            type=int,
            default=200,
            help="Devices of the demo organization (gateways included).",
        )

    def handle(self, *args, password, devices, **options):
        if not password:
            raise CommandError("--password must not be empty.")
        if devices < 0:
            raise CommandError("--devices must be 0 or more.")
        result = demo.SeedResult()
        with transaction.atomic():
            logins = self._seed(result, demo.DemoPassword(password), devices)
        created = ", ".join(f"{n} {what}" for what, n in result.created.items() if n) or "nothing"
        self.stdout.write(f"Demo data ready. Created: {created}.")
        self._print_logins(logins, password)

    def _seed(self, result, password, devices):
        try:
            org = demo.ensure_organization("demo", "Demo Building Co", result)
            demo.seed_organization(org, devices=devices, gateways=min(5, devices), result=result)
            demo.ensure_demo_license(org, capacity=max(500, 2 * devices), result=result)
            firmware_demo.seed(org)
            other = demo.ensure_organization("other", "Other Tenant Ltd", result)
            demo.seed_organization(other, devices=8, gateways=1, groups=("Lobby",), result=result)
        except ValueError as exc:  # e.g. a gateway UID taken by another organization
            raise CommandError(str(exc)) from exc

        logins = []
        for username, roles in DEMO_USERS:
            demo.ensure_member(org, username, roles, password, result)
            logins.append(
                (username, org.name, ", ".join(r.label for r in roles) or "(no role group)")
            )
        demo.ensure_member(other, "other", (A,), password, result)
        logins.append(("other", other.name, A.label))
        support = demo.ensure_member(
            None, "support", (), password, result, is_staff=True, is_superuser=True
        )
        if not (support.is_staff and support.is_superuser):
            raise CommandError("A user 'support' exists but is not a superuser; rename it first.")
        logins.append(("support", "(Django admin)", "superuser, staff"))
        return logins

    def _print_logins(self, logins, password):
        header = ("username", "organization", "roles", "password")
        rows = [header, *((*login, password) for login in logins)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for n, row in enumerate(rows):
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
            if n == 0:
                self.stdout.write("  ".join("-" * w for w in widths))
