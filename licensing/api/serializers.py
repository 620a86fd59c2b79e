"""The licensing API's serializers: licenses, seat usage, and an upload."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from licensing.models import License


class LicenseSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    uploaded_by = serializers.SerializerMethodField()

    class Meta:
        model = License
        fields = [
            "id",
            "license_id",
            "capacity",
            "valid_from",
            "valid_until",
            "issued_at",
            "status",
            "uploaded_by",
            "uploaded_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["valid", "expired", "not yet valid"]))
    def get_status(self, license):
        return license.status_on(self.context.get("today"))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_uploaded_by(self, license):
        return license.uploaded_by.get_username() if license.uploaded_by else None


class UsageSerializer(serializers.Serializer):
    used = serializers.IntegerField(allow_null=True, help_text="Devices holding a seat now.")
    total = serializers.IntegerField(help_text="Seats of the licenses valid today.")
    free = serializers.IntegerField(allow_null=True)
    over_capacity = serializers.BooleanField(help_text="An expired license left too few seats.")


class LicenseUploadSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="The vendor's license file.")
    text = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Or the license file's contents.",
    )
