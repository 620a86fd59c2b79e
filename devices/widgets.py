"""The devices app's dashboard widgets and header links (imported by ``DevicesConfig.ready``)."""

from portal.navigation import NavItem
from portal.navigation import register as register_link
from portal.widgets import HALF, Widget, register

register(Widget(key="devices", title="Devices", url_name="devices:widget", order=10))
register(
    Widget(key="groups", title="Groups", url_name="devices:groups-widget", order=20, size=HALF)
)
register(
    Widget(
        key="operations",
        title="Operations",
        url_name="devices:operations-widget",
        order=25,
        size=HALF,
    )
)
register(
    Widget(
        key="gateways", title="Gateways", url_name="devices:gateways-widget", order=30, size=HALF
    )
)
register(Widget(key="events", title="Events", url_name="devices:events-widget", order=40))

register_link(NavItem("devices", "Devices", "devices:widget", order=10))
register_link(NavItem("operations", "Operations", "devices:operations-widget", order=30))
register_link(NavItem("gateways", "Gateways", "devices:gateways-widget", order=40))
register_link(NavItem("events", "Events", "devices:events-widget", order=50))
