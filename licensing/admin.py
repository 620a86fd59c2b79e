"""Licenses for support staff: read-only, since a license is only ever what its file says."""

from django.contrib import admin

from licensing.models import License
from portal.admin import OrganizationScopedAdminMixin


@admin.register(License)
class LicenseAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "license_id",
        "organization",
        "capacity",
        "valid_from",
        "valid_until",
        "status",
        "uploaded_by",
        "uploaded_at",
    ]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "valid_until"]
    search_fields = ["license_id", "organization__name", "organization__slug"]
    list_select_related = ["organization", "uploaded_by"]
    date_hierarchy = "valid_until"
    fields = [
        "organization",
        "license_id",
        "capacity",
        "valid_from",
        "valid_until",
        "issued_at",
        "uploaded_by",
        "uploaded_at",
        "raw",
    ]
    readonly_fields = tuple(fields)

    @admin.display(description="status")
    def status(self, obj):
        return obj.status

    def has_add_permission(self, request):
        # Licenses come in through the Licenses widget, which checks the signature.
        return False

    def has_change_permission(self, request, obj=None):
        # Nothing is editable; viewing needs only the view permission.
        return False
