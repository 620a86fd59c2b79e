"""The licensing part of the REST API: installed licenses, seats, and uploading a file.

Uploads go through ``licensing.forms.LicenseUploadForm`` — the Licenses widget's own
validation, storage and audit — so a file the widget refuses, the API refuses with the
same sentence.
"""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from licensing import capacity
from licensing.api.serializers import LicenseSerializer, LicenseUploadSerializer, UsageSerializer
from licensing.forms import LicenseUploadForm
from licensing.models import License
from portal.api import REFUSED, OrganizationScopedMixin, form_errors


@extend_schema(tags=["licenses"])
class LicenseViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Capacity licenses; uploading one is for Administrators."""

    serializer_class = LicenseSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    rules = {"create": "manage_licenses"}

    def get_queryset(self):
        return self.scoped(License).select_related("uploaded_by")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        request=LicenseUploadSerializer,
        responses={
            201: LicenseSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="Refused, with the reason: {field: [message]}."
            ),
            **REFUSED,
        },
    )
    def create(self, request):
        """Install a license file (multipart ``file``) or its contents (``text``)."""
        body = LicenseUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data.get("file")
        form = LicenseUploadForm(
            {"text": body.validated_data.get("text", "")},
            {"file": upload} if upload else {},
            organization=self.organization,
        )
        installed = form.install(request.user)
        if installed is None:
            return Response(form_errors(form), status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(installed).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: UsageSerializer, **REFUSED})
    @action(detail=False, methods=["get"])
    def usage(self, request):
        """Seats used, total and free, counted now."""
        usage = capacity.usage(self.organization, today=timezone.localdate())
        data = {
            "used": usage.used,
            "total": usage.total,
            "free": usage.free,
            "over_capacity": usage.over_capacity,
        }
        return Response(UsageSerializer(data).data)
