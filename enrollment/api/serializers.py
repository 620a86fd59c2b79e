"""The enrollment API's serializers: records (never their keys), enrolling, photos, QR, nearby.

The enrolling serializers are validated by the Enrollment widget's ``EnrollForm``: one
rule everywhere.
"""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from devices.api.serializers import ConflictSerializer, RefSerializer
from devices.models import Device, Gateway
from enrollment import photos
from enrollment.api.schema import NO_SUCH_GATEWAY, NO_SUCH_TYPE
from enrollment.forms import enrollment_form, resolve_device_type, resolve_gateway
from enrollment.models import EnrollmentRecord
from portal.api import form_errors


class GatewayUidRefSerializer(RefSerializer):
    uid = serializers.CharField()


class EnrollmentSerializer(serializers.ModelSerializer):
    """A record; never its access key."""

    status_label = serializers.CharField(source="get_status_display", read_only=True)
    device_type = RefSerializer(read_only=True)
    gateway = GatewayUidRefSerializer(read_only=True, allow_null=True)
    has_photo = serializers.SerializerMethodField()
    photo_url = serializers.SerializerMethodField(help_text="GET it with the same credentials.")

    class Meta:
        model = EnrollmentRecord
        fields = [
            "id",
            "serial_number",
            "name",
            "location_note",
            "device_type",
            "gateway",
            "app_only",
            "status",
            "status_label",
            "reason",
            "device",
            "batch",
            "has_photo",
            "photo_url",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_has_photo(self, record) -> bool:
        return bool(record.photo)

    @extend_schema_field(OpenApiTypes.STR)
    def get_photo_url(self, record):
        return reverse("api:enrollment-photo", args=[record.pk]) if record.photo else None


class AppEnrollmentSerializer(serializers.Serializer):
    """Validated by the Enrollment widget's ``EnrollForm``: one rule everywhere."""

    app_only = True

    serial_number = serializers.CharField(trim_whitespace=False)
    access_key = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    device_type = serializers.CharField(help_text="A device type's name, or its id.")
    name = serializers.CharField(required=False, allow_blank=True, default="")
    location_note = serializers.CharField(required=False, allow_blank=True, default="")

    def validate(self, attrs):
        organization = self.context["organization"]
        data, errors = dict(attrs), {}
        device_type = resolve_device_type(attrs["device_type"])
        if device_type is None:
            errors["device_type"] = [NO_SUCH_TYPE]
        else:
            data["device_type"] = device_type.pk
        if not self.app_only:
            gateway = resolve_gateway(
                Gateway.objects.for_organization(organization), attrs["gateway"]
            )
            if gateway is None:
                errors["gateway"] = [NO_SUCH_GATEWAY]
            else:
                data["gateway"] = gateway.pk
        form = enrollment_form(organization, data, app_only=self.app_only)
        if not form.is_valid():
            errors = form_errors(form) | errors
        if errors:
            raise serializers.ValidationError(errors)
        return form.row()


class EnrollmentCreateSerializer(AppEnrollmentSerializer):
    app_only = False

    gateway = serializers.CharField(help_text="The gateway's UID, or its id.")


class PhotoSerializer(serializers.Serializer):
    photo = serializers.FileField(
        help_text=f"A JPEG, PNG, WebP… of at most {photos.MAX_UPLOAD_BYTES // 2**20} MB; "
        f"stored re-encoded, at most {photos.MAX_SIDE} px, without metadata (no GPS)."
    )


class QRImageSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="A photo of the device's QR label.")


class DecodedSerializer(serializers.Serializer):
    """What a label says, without its key."""

    serial_number = serializers.CharField()
    device_type = serializers.CharField(help_text="The type's name, as on the label.")
    device_type_id = serializers.IntegerField(
        allow_null=True, help_text="The device type of that name; null when there is none."
    )
    has_key = serializers.BooleanField(help_text="Always true: a valid label carries a key.")
    refusal = serializers.CharField(
        allow_null=True, help_text="Why this serial cannot be enrolled now, or null."
    )


class NearbyDeviceSerializer(serializers.ModelSerializer):
    device_type = RefSerializer(read_only=True)
    gateway = GatewayUidRefSerializer(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "serial_number",
            "hardware_id",
            "name",
            "device_type",
            "gateway",
            "reported_state",
            "last_seen",
        ]
        read_only_fields = fields


class NearbyFilterSerializer(serializers.Serializer):
    gateway = serializers.CharField(
        required=False, allow_blank=True, help_text="Only this gateway's (UID or id)."
    )


class RetryConflictSerializer(ConflictSerializer):
    code = serializers.ChoiceField(choices=["capacity_exceeded", "not_retryable"])
