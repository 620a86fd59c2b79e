"""Firmware for support staff: images are read-only (their bytes and hash are the point),
rollouts and loads are looked at, not edited; state changes belong to the portal."""

from django.contrib import admin

from firmware.models import FirmwareImage, ImageLoad, Rollout
from portal.admin import OrganizationScopedAdminMixin


class ReadOnlyAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(FirmwareImage)
class FirmwareImageAdmin(ReadOnlyAdmin):
    list_display = ["filename", "version", "organization", "size", "format", "created_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "format", "device_types"]
    search_fields = ["filename", "version", "sha256"]
    list_select_related = ["organization"]
    fields = [
        "organization",
        "filename",
        "version",
        "format",
        "size",
        "sha256",
        "stored_as",
        "device_types",
        "notes",
        "uploaded_by",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="stored as")
    def stored_as(self, image):
        return image.file.name  # a storage name, not a link: any backend, no public URL

    def has_delete_permission(self, request, obj=None):
        # Deleting goes through the widget or the API, which refuse an image in use.
        return False


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ["bulk", "organization", "image_filename", "image_version", "state"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "state"]
    search_fields = ["image_filename", "image_version", "image_sha256"]
    list_select_related = ["organization"]
    raw_id_fields = ["bulk", "image"]


@admin.register(ImageLoad)
class ImageLoadAdmin(ReadOnlyAdmin):
    list_display = ["operation", "rollout", "device", "batch", "phase", "percent"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "phase"]
    list_select_related = ["rollout", "device"]
    raw_id_fields = ["operation", "rollout", "device"]
