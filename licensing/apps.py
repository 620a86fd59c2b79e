from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Licensing"

    def ready(self):
        from licensing import widgets  # noqa: F401  (registers the Licenses widget)
        from licensing.keys import DEMO_PUBLIC_KEY

        # The demo key's private half is in the repository: with it, anybody can sign a
        # license this portal would accept. Production refuses to start with it.
        if not settings.DEBUG and settings.LICENSE_PUBLIC_KEY.strip() == DEMO_PUBLIC_KEY:
            raise ImproperlyConfigured(
                "Refusing to start: DEBUG is off but LICENSE_PUBLIC_KEY is not set (the demo "
                "key would accept licenses signed with the private key published in the "
                "repository). Set LICENSE_PUBLIC_KEY to the vendor's public key."
            )
        checks.register(check_license_public_key)


def check_license_public_key(app_configs=None, **kwargs):
    """A broken key refuses every license; the demo key accepts licenses anyone can sign."""
    from licensing.keys import DEMO_PUBLIC_KEY
    from licensing.signing import LicenseKeyError, load_public_key

    value = getattr(settings, "LICENSE_PUBLIC_KEY", "")
    try:
        load_public_key(value)
    except LicenseKeyError as error:
        return [
            checks.Error(
                f"LICENSE_PUBLIC_KEY is not usable: {error}",
                hint="Set it to the base64 public key the vendor gave you "
                "(manage.py generate_license_keypair makes a pair for testing).",
                id="licensing.E001",
            )
        ]
    if not settings.DEBUG and value.strip() == DEMO_PUBLIC_KEY:
        return [
            checks.Warning(
                "LICENSE_PUBLIC_KEY is the demo key, whose private half is public: anybody "
                "can sign a license this portal accepts.",
                hint="Set LICENSE_PUBLIC_KEY to the vendor's public key.",
                id="licensing.W001",
            )
        ]
    return []
