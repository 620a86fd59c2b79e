"""The Firmware widget on the dashboard (imported from ``FirmwareConfig.ready``)."""

from portal.widgets import Widget, register

register(Widget("firmware", "Firmware", "firmware:widget", order=35, rule="view"))
