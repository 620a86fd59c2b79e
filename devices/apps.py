from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "Devices"

    def ready(self):
        from devices import audit_log, operations, widgets  # noqa: F401  (they register themselves)
        from devices.ingest import HELLO_HANDLERS, RESULT_HANDLERS
        from devices.lifecycle import LICENSED_STATES
        from devices.models import Device
        from licensing.capacity import set_used_counter
        from portal.api import name_enums

        # Seats are derived from device states; licensing knows no device, so we tell it.
        set_used_counter(
            lambda org: (
                Device.objects.for_organization(org).filter(state__in=LICENSED_STATES).count()
            )
        )

        name_enums(
            DeviceStateEnum="devices.choices.DeviceState",
            OperationStateEnum="devices.choices.OperationState",
        )
        if operations.complete not in RESULT_HANDLERS:
            RESULT_HANDLERS.append(operations.complete)
        if operations.gateways_back not in HELLO_HANDLERS:
            HELLO_HANDLERS.append(operations.gateways_back)
