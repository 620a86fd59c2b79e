"""The devices app's dashboard widgets (imported by ``DevicesConfig.ready``)."""

from portal.widgets import Widget, register

register(Widget(key="devices", title="Devices", url_name="devices:widget", order=10))
register(Widget(key="groups", title="Groups", url_name="devices:groups-widget", order=20))
register(Widget(key="gateways", title="Gateways", url_name="devices:gateways-widget", order=30))
register(
    Widget(key="operations", title="Operations", url_name="devices:operations-widget", order=25)
)
register(Widget(key="events", title="Events", url_name="devices:events-widget", order=40))
