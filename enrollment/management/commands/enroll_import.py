"""Import a list of devices to enroll from a file: the batch page's parser and checks.

``manage.py enroll_import FILE --organization SLUG [--type NAME] [--gateway UID]
[--dry-run] [--user USERNAME]``. A progress bar on stderr; a summary on stdout; the
refused rows in ``FILE.errors.csv`` (row, reason and the row's columns, the key left
empty). The records are stored in one transaction, then those with a gateway are sent.
"""

import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from devices.models import DeviceType, Gateway
from enrollment import batch
from enrollment.batch import plural
from portal import exports
from portal.models import Membership, Organization
from portal.permissions import can_enroll
from portal.progress import ProgressBar


class Command(BaseCommand):
    help = "Enroll the devices listed in a CSV/TSV file (serial,key[,type,gateway,name,location])."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the list: CSV, TSV or serial;key lines, UTF-8")
        parser.add_argument("--organization", required=True, help="the organization's slug")
        parser.add_argument("--type", default="", help="device type for rows without one")
        parser.add_argument("--gateway", default="", help="gateway UID for rows without one")
        parser.add_argument("--dry-run", action="store_true", help="check every row, store nothing")
        parser.add_argument(
            "--user", default="", help="who imports (audit log); must be allowed to enroll"
        )
        parser.add_argument(
            "--no-send", action="store_true", help="store the records, do not send them"
        )

    def handle(self, *args, **o):
        self.stderr.style_func = None  # progress, not errors
        path = Path(o["file"])
        organization = Organization.objects.filter(slug=o["organization"]).first()
        if organization is None:
            raise CommandError(f"No organization {o['organization']!r}.")
        user = self._user(organization, o["user"])
        device_type = gateway = None
        if o["type"]:
            device_type = DeviceType.objects.filter(name__iexact=o["type"]).first()
            if device_type is None:
                raise CommandError(f"No device type {o['type']!r}.")
        if o["gateway"]:
            gateway = Gateway.objects.for_organization(organization).filter(uid=o["gateway"])
            gateway = gateway.defer("secret").first()
            if gateway is None:
                raise CommandError(f"No gateway {o['gateway']!r} in {organization.slug}.")
        try:
            with path.open("rb") as fh:
                data = fh.read(batch.MAX_BYTES + 1)
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None

        started = time.monotonic()
        try:
            parsed = batch.parse(data)
        except batch.BatchError as error:
            raise CommandError(f"{path}: {error} Nothing was stored.") from None
        if not parsed.rows:
            raise CommandError(f"{path}: the list has no rows.")
        self.stderr.write(
            f"{path}: {len(parsed.rows):,} rows ({parsed.delimiter_name}-separated, "
            f"{'with' if parsed.header else 'no'} header)"
        )
        progress = ProgressBar(self.stderr, "rows checked")
        options = {"device_type": device_type, "gateway": gateway, "progress": progress}
        records = []
        if o["dry_run"]:
            checked = batch.check(organization, parsed, **options)
        else:
            try:
                committed = batch.commit(organization, user, parsed, source=path.name, **options)
            except batch.NothingToImport:
                checked = batch.check(
                    organization, parsed, device_type=device_type, gateway=gateway
                )
            else:
                checked, records = committed.checked, committed.records
        seconds = time.monotonic() - started
        invalid = checked.invalid
        errors_path = path.with_name(path.name + ".errors.csv")
        if invalid:
            exports.write(errors_path, batch.ERROR_COLUMNS, batch.error_rows(invalid))
        elif errors_path.exists():
            errors_path.unlink()  # an old one would describe another run

        valid = len(checked.rows) - len(invalid)
        refused = plural(len(invalid), "row") + " refused"
        if o["dry_run"]:
            summary = f"Dry run: {plural(valid, 'row')} valid, {refused}; nothing stored."
        elif records:
            summary = f"{plural(len(records), 'record')} created, {refused} in {seconds:.1f} s."
            if not o["no_send"]:
                summary += " " + batch.send(organization, user, records)
        else:
            summary = f"No row can be enrolled ({refused}); nothing stored."
        self.stdout.write(summary)
        if invalid:
            self.stdout.write(
                f"Refused rows written to {errors_path} (row, reason, the row's columns; "
                "the key column is empty: fill it in before importing the file again)."
            )
            for row in invalid[:10]:
                self.stdout.write(f"  row {row.number}: {row.reason}")
            if len(invalid) > 10:
                self.stdout.write(f"  … and {len(invalid) - 10:,} more")

    @staticmethod
    def _user(organization, username):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        membership = Membership.objects.filter(user=user, organization=organization).first()
        if membership is None or not can_enroll(membership.roles):
            raise CommandError(f"{username} may not enroll devices in {organization.slug}.")
        return user
