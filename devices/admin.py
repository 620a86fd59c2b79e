"""Django admin for the inventory, for support staff.

Rows are scoped to the staff member's organizations by the portal's admin mixin.
``Device.state`` is read-only here: only ``devices.lifecycle`` moves a device.
Gateway online status and last-seen time belong to the bridge, so they are read-only too.
"""

from django import forms
from django.contrib import admin

from devices.models import Device, DeviceEvent, DeviceGroup, DeviceType, Gateway
from portal.admin import OrganizationScopedAdminMixin, superuser_only


@admin.register(DeviceType)
class DeviceTypeAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """The vendor's catalogue, shared by every organization: only superusers change it."""

    organization_lookup = None
    list_display = [
        "name",
        "protocol",
        "image_extensions",
        "replace_needs_manual_reset",
        "is_gateway",
    ]
    list_filter = ["protocol", "is_gateway", "replace_needs_manual_reset"]
    search_fields = ["name"]

    def has_add_permission(self, request):
        return superuser_only(request)

    def has_change_permission(self, request, obj=None):
        return superuser_only(request)

    def has_delete_permission(self, request, obj=None):
        return superuser_only(request)


@admin.register(Gateway)
class GatewayAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    list_display = ["uid", "name", "organization", "is_online", "last_seen", "device_count"]
    list_filter = ["is_online", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["uid", "name", "organization__name"]
    list_select_related = ["organization"]
    readonly_fields = ["is_online", "last_seen", "secret_rotated_at", "agent_info", "created_at"]
    masked_fields = ("secret",)

    def get_queryset(self, request):
        return super().get_queryset(request).with_device_count()

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, obj):
        return obj.device_count


@admin.register(DeviceGroup)
class DeviceGroupAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "organization", "description", "device_count", "created_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "description", "organization__name"]
    list_select_related = ["organization"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).with_device_count()

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, obj):
        return obj.device_count


class DeviceAdminForm(forms.ModelForm):
    """Model ``clean()`` checks the gateway; groups (many-to-many) are checked here."""

    class Meta:
        model = Device
        fields = [
            "organization",
            "device_type",
            "serial_number",
            "hardware_id",
            "name",
            "gateway",
            "groups",
            "location",
        ]

    def clean(self):
        cleaned = super().clean()
        organization, groups = cleaned.get("organization"), cleaned.get("groups")
        if organization and groups:
            foreign = [g.name for g in groups if g.organization_id != organization.pk]
            if foreign:
                self.add_error(
                    "groups", f"These groups belong to another organization: {', '.join(foreign)}."
                )
        return cleaned


@admin.register(Device)
class DeviceAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    form = DeviceAdminForm
    list_display = [
        "serial_number",
        "name",
        "hardware_id",
        "organization",
        "device_type",
        "gateway",
        "state",
        "updated_at",
    ]
    list_filter = [
        "state",
        "device_type",
        "device_type__protocol",
        "gateway__is_online",
        ("organization", admin.RelatedOnlyFieldListFilter),
        ("gateway", admin.RelatedOnlyFieldListFilter),
        ("groups", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["serial_number", "hardware_id", "name", "gateway__uid", "location"]
    list_select_related = ["organization", "device_type", "gateway"]
    readonly_fields = ["state", "state_changed_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["organization", "device_type", "serial_number", "hardware_id", "name"]}),
        ("Placement", {"fields": ["gateway", "groups", "location"]}),
        ("Lifecycle", {"fields": ["state", "state_changed_at", "created_at", "updated_at"]}),
    ]
    filter_horizontal = ["groups"]
    show_full_result_count = False  # a count(*) over 100,000 devices on every page is waste


@admin.register(DeviceEvent)
class DeviceEventAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    """Read-only: events are what gateways said; support staff look, never edit."""

    list_display = ["occurred_at", "kind", "device", "gateway", "organization", "message"]
    list_filter = ["kind", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["device__serial_number", "gateway__uid", "message"]
    list_select_related = ["organization", "device", "gateway"]
    raw_id_fields = ["device", "gateway"]
    show_full_result_count = False  # counting millions of events on every page is slow

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
