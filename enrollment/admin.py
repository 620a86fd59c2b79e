"""Enrollment records for support staff: searchable, read-only, keys masked.

Enrolling happens in the portal and the API, which check the role rule (Administrator,
or Device Manager and IoT Manager); the admin is not a way around it, so it adds and
changes nothing.
"""

from django.contrib import admin

from enrollment.models import EnrollmentBatch, EnrollmentRecord
from portal.admin import OrganizationScopedAdminMixin


class ReadOnlyAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(EnrollmentRecord)
class EnrollmentRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "serial_number",
        "organization",
        "device_type",
        "gateway",
        "app_only",
        "status",
        "created_by",
        "created_at",
    ]
    list_filter = [
        "status",
        "app_only",
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("device_type", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["serial_number", "organization__name", "reason"]
    list_select_related = ["organization", "device_type", "gateway", "created_by"]
    date_hierarchy = "created_at"
    masked_fields = ("access_key",)
    fields = [
        "organization",
        "serial_number",
        "access_key",
        "device_type",
        "gateway",
        "app_only",
        "status",
        "reason",
        "device",
        "operation",
        "batch",
        "name",
        "location_note",
        "photo",
        "created_by",
        "created_at",
        "finished_at",
    ]
    readonly_fields = tuple(fields)


@admin.register(EnrollmentBatch)
class EnrollmentBatchAdmin(ReadOnlyAdmin):
    list_display = ["pk", "organization", "source", "rows", "accepted", "rejected", "created_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["source", "organization__name"]
    list_select_related = ["organization"]
