"""The Licenses widget and header link (imported from ``LicensingConfig.ready``)."""

from portal.navigation import NavItem
from portal.navigation import register as register_link
from portal.widgets import HALF, Widget, register

register(Widget("licenses", "Licenses", "licensing:widget", order=32, rule="view", size=HALF))
register_link(NavItem("licenses", "Licenses", "licensing:widget", order=60))
