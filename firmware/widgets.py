"""The Firmware widget and header link (imported from ``FirmwareConfig.ready``)."""

from portal.navigation import NavItem
from portal.navigation import register as register_link
from portal.widgets import Widget, register

register(Widget("firmware", "Firmware", "firmware:widget", order=35, rule="view"))
register_link(NavItem("firmware", "Firmware", "firmware:widget", order=55))
