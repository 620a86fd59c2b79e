"""The devices app's dashboard widgets (imported by ``DevicesConfig.ready``)."""

from portal.widgets import Widget, register

register(Widget(key="devices", title="Devices", url_name="devices:widget", order=10))
register(Widget(key="groups", title="Groups", url_name="devices:groups-widget", order=20))
