from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "Devices"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from devices import audit_log, gateway_changes, operations, preflight, widgets  # noqa: F401
        from devices.ingest import HELLO_HANDLERS, RESULT_HANDLERS
        from devices.lifecycle import LICENSED_STATES
        from devices.models import Device, Gateway
        from licensing.capacity import set_used_counter
        from portal import services
        from portal.api import name_enums

        # Seats are derived from device states; licensing knows no device, so we tell it.
        set_used_counter(
            lambda org: (
                Device.objects.for_organization(org).filter(state__in=LICENSED_STATES).count()
            )
        )

        services.register("mqtt", preflight.check_mqtt)
        name_enums(
            DeviceStateEnum="devices.choices.DeviceState",
            OperationStateEnum="devices.choices.OperationState",
        )
        # A new, rotated or deleted gateway: bridges forget it, broker accounts follow.
        post_save.connect(gateway_changes.on_save, Gateway, dispatch_uid="gateway-changed")
        post_delete.connect(gateway_changes.on_delete, Gateway, dispatch_uid="gateway-deleted")

        if operations.complete not in RESULT_HANDLERS:
            RESULT_HANDLERS.append(operations.complete)
        if operations.gateways_back not in HELLO_HANDLERS:
            HELLO_HANDLERS.append(operations.gateways_back)
