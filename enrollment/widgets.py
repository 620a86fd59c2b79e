"""The Enrollment widget on the dashboard (imported from ``EnrollmentConfig.ready``)."""

from portal.widgets import Widget, register

register(Widget("enrollment", "Enrollment", "enrollment:widget", order=22, rule="view"))
