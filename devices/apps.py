from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "Devices"

    def ready(self):
        from devices import widgets  # noqa: F401  (registers the Devices and Groups widgets)
