"""The Licenses widget on the dashboard (imported from ``LicensingConfig.ready``)."""

from portal.widgets import Widget, register

register(Widget("licenses", "Licenses", "licensing:widget", order=60, rule="view"))
