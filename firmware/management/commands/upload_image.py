"""Upload a firmware image from a shell: the Firmware widget's checks, storage and audit.

``manage.py upload_image FILE --organization SLUG [--type NAME ...] [--version V]
[--notes TEXT] [--user USERNAME]``. A progress bar on stderr while the file is checked
(read and hashed) and stored; the image on stdout. The same bytes uploaded again are
not stored twice: the command says which image they are and exits 0, so a script may
run it again safely.
"""

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from devices.models import DeviceType
from firmware.forms import ImageUploadForm
from firmware.uploads import mib
from portal.models import Membership, Organization
from portal.permissions import can_run_device_actions


class ByteProgress:
    """``checking [##########----------]  50%  32 MiB/64 MiB``, then ``storing`` the same
    way: redrawn in place on a terminal, one line per 10 % in a log. A pass that starts
    over (fewer bytes done than before) is the next phase."""

    def __init__(self, stream, phases=("checking", "storing"), width: int = 30):
        self.stream, self.width, self.tty = stream, width, stream.isatty()
        self.phases, self.phase = list(phases), 0
        self.done, self.tenth = 0, -1

    def __call__(self, done: int, total: int):
        if done < self.done and self.phase + 1 < len(self.phases):
            self.phase, self.tenth = self.phase + 1, -1
        self.done = done
        fraction = min(1.0, done / total) if total else 1.0
        tenth = int(fraction * 10)
        if tenth == self.tenth and (done < total or not self.tty):
            return
        self.tenth = tenth
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        label = self.phases[self.phase]
        line = f"{label:9s}[{bar}] {int(fraction * 100):3d}%  {mib(done)}/{mib(total)}"
        ending = "\n" if done >= total or not self.tty else ""
        self.stream.write(f"\r{line}" if self.tty else line, ending=ending)
        self.stream.flush()


class Command(BaseCommand):
    help = "Upload a firmware image for an organization (checked, hashed, stored once)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # ``--version`` is the image's version here, not Django's.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("file", help="the image file")
        parser.add_argument("--organization", required=True, help="the organization's slug")
        parser.add_argument(
            "--type",
            action="append",
            default=[],
            dest="types",
            help="a device type it fits (repeat for several); default: every type "
            "that accepts the file's extension",
        )
        parser.add_argument(
            "--version", default="", help="default: from the image's header or file name"
        )
        parser.add_argument("--notes", default="", help="release notes")
        parser.add_argument(
            "--user", default="", help="who uploads (audit log); must be allowed to provision"
        )

    def handle(self, *args, **o):
        self.stderr.style_func = None  # progress, not errors
        path = Path(o["file"])
        organization = Organization.objects.filter(slug=o["organization"]).first()
        if organization is None:
            raise CommandError(f"No organization {o['organization']!r}.")
        user = self._user(organization, o["user"])
        type_ids = []
        for name in o["types"]:
            found = DeviceType.objects.filter(name__iexact=name).first()
            if found is None:
                raise CommandError(f"No device type {name!r}.")
            type_ids.append(found.pk)
        try:
            handle = path.open("rb")
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        with handle:
            upload = File(handle, name=os.path.basename(path))
            form = ImageUploadForm(
                {"version": o["version"], "notes": o["notes"], "device_types": type_ids},
                {"file": upload},
                organization=organization,
                progress=ByteProgress(self.stderr),
            )
            image = form.upload_image(user)
        if image is None and form.duplicate is not None:
            d = form.duplicate
            self.stdout.write(
                f"Already uploaded: image {d.pk} “{d.filename}”, version {d.version}, "
                f"sha256 {d.sha256}. Nothing stored."
            )
            return
        if image is None:
            reasons = "\n".join(
                f"  {field}: {message}"
                for field, messages in form.errors.items()
                for message in messages
            )
            raise CommandError(f"{path}: refused, nothing stored.\n{reasons}")
        types = ", ".join(t.name for t in image.device_types.all())
        self.stdout.write(
            f"Image {image.pk} “{image.filename}”, version {image.version}, {mib(image.size)}, "
            f"sha256 {image.sha256}, fits {types}."
        )

    @staticmethod
    def _user(organization, username):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        membership = Membership.objects.filter(user=user, organization=organization).first()
        if membership is None or not can_run_device_actions(membership.roles):
            raise CommandError(f"{username} may not upload images in {organization.slug}.")
        return user
