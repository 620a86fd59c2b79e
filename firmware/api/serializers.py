"""The firmware API's serializers: images, an upload, and the answer to a duplicate."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from firmware.models import FirmwareImage


class FirmwareImageSerializer(serializers.ModelSerializer):
    device_types = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    uploaded_by = serializers.SerializerMethodField()

    class Meta:
        model = FirmwareImage
        fields = [
            "id",
            "filename",
            "version",
            "notes",
            "size",
            "sha256",
            "format",
            "device_types",
            "uploaded_by",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_uploaded_by(self, image):
        return image.uploaded_by.get_username() if image.uploaded_by else None


class FirmwareImageUploadSerializer(serializers.Serializer):
    """The multipart request (documentation; the form does the checking)."""

    file = serializers.FileField(help_text="The image file; its extension names its format.")
    version = serializers.CharField(
        required=False, help_text="Left out: read from the image's header or its file name."
    )
    device_types = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Device type names (or ids) it fits; left out: every type that accepts "
        "its extension.",
    )
    notes = serializers.CharField(required=False, help_text="Release notes.")


class DuplicateImageSerializer(serializers.Serializer):
    detail = serializers.CharField()
    image = FirmwareImageSerializer(help_text="The image these bytes already are.")
