"""Vendor side: issue a signed license file for one organization.

The private key comes from ``--private-key FILE`` (a PKCS#8 PEM, or base64 of the raw
32 bytes), else from the ``LICENSE_PRIVATE_KEY`` environment variable (base64), else
the DEMO key of ``licensing/keys.py`` — said loudly, since only portals still on the
demo public key accept such a license.
"""

import os
from datetime import date, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from licensing import signing
from licensing.keys import DEMO_PRIVATE_KEY


def iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Issue a signed license file: capacity N devices for D days, for one organization."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="The organization's slug.")
        parser.add_argument(
            "--organization-name",
            help="The name printed in the file for humans (default: the slug).",
        )
        parser.add_argument("--capacity", type=int, required=True, help="Devices it allows.")
        parser.add_argument("--days", type=int, required=True, help="Days it is valid.")
        parser.add_argument(
            "--valid-from", type=iso_date, help="First valid day, YYYY-MM-DD (default: today)."
        )
        parser.add_argument(
            "--private-key",
            type=Path,
            help="File with the vendor's private key (default: $LICENSE_PRIVATE_KEY, else the demo key).",
        )
        parser.add_argument("--out", type=Path, help="Write the file here instead of stdout.")

    def private_key(self, path):
        if path:
            try:
                return signing.load_private_key(path.read_bytes()), f"the key in {path}"
            except OSError as error:
                raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        if os.environ.get("LICENSE_PRIVATE_KEY", "").strip():
            return signing.load_private_key(os.environ["LICENSE_PRIVATE_KEY"]), (
                "the key in $LICENSE_PRIVATE_KEY"
            )
        self.stderr.write(
            "Using the DEMO private key (licensing/keys.py): only portals whose "
            "LICENSE_PUBLIC_KEY is the demo key accept this license. Give --private-key "
            "or set LICENSE_PRIVATE_KEY to sign a real one."
        )
        return signing.load_private_key(DEMO_PRIVATE_KEY), "the DEMO key"

    def handle(self, *args, **options):
        if options["days"] < 1:
            raise CommandError("--days must be at least 1.")
        try:
            key, key_source = self.private_key(options["private_key"])
        except signing.LicenseKeyError as error:
            raise CommandError(str(error)) from None
        valid_from = options["valid_from"] or timezone.localdate()
        valid_until = valid_from + timedelta(days=options["days"] - 1)  # both days inclusive
        try:
            data = signing.issue(
                key,
                {
                    "organization": options["organization"],
                    "organization_name": options["organization_name"],
                    "capacity": options["capacity"],
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                },
            )
        except signing.LicenseError as error:
            raise CommandError(error.reason) from None
        summary = (
            f"License for {options['organization']}: {options['capacity']} devices, "
            f"{valid_from} to {valid_until}, signed with {key_source}."
        )
        if options["out"]:
            try:
                options["out"].write_bytes(data)
            except OSError as error:
                raise CommandError(f"Cannot write {options['out']}: {error.strerror}.") from None
            self.stderr.write(f"{summary} Written to {options['out']}.")
        else:
            self.stdout.write(data.decode("utf-8"), ending="")
            self.stderr.write(summary)
