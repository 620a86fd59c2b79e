from django.apps import AppConfig


class FirmwareConfig(AppConfig):
    name = "firmware"
    verbose_name = "Firmware"

    def ready(self):
        from firmware import widgets  # noqa: F401  (registers the Firmware widget)
