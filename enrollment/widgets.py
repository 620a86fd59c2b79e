"""The Enrollment widget and header link (imported from ``EnrollmentConfig.ready``)."""

from portal.navigation import NavItem
from portal.navigation import register as register_link
from portal.widgets import Widget, register

register(Widget("enrollment", "Enrollment", "enrollment:widget", order=35, rule="view"))
register_link(NavItem("enrollment", "Enrollment", "enrollment:widget", order=20))
