"""Vendor side: make a new Ed25519 key pair for signing license files."""

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand

from licensing.signing import private_key_b64, public_key_b64


class Command(BaseCommand):
    help = (
        "Print a new license-signing key pair: the public half goes into every portal's "
        "LICENSE_PUBLIC_KEY, the private half stays with the vendor."
    )
    requires_system_checks = []

    def handle(self, *args, **options):
        key = Ed25519PrivateKey.generate()
        self.stdout.write(f"LICENSE_PUBLIC_KEY={public_key_b64(key)}")
        self.stdout.write(f"LICENSE_PRIVATE_KEY={private_key_b64(key)}")
        self.stderr.write(
            "Keep LICENSE_PRIVATE_KEY secret (e.g. in a file readable only by you, for "
            "issue_license --private-key FILE); portals need only LICENSE_PUBLIC_KEY."
        )
